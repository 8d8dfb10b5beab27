"""The load generator's gRPC client: closed-loop workers sending one pre-serialised V2
`ModelInferRequest` over one HTTP/2 channel (grpc.aio), measured like the HTTP clients.

The request bytes go out as they are and the answer is not parsed (a channel method without
serialisers), as the raw HTTP client sends pre-built bytes and parses only the status: the
client's cost stays small beside the server it measures.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bushu.bench.target import Target

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


async def grpc_workers(target: Target, concurrency: int, window_end: int, part: Any) -> None:
    """`concurrency` workers until `window_end` (perf_counter_ns), recording into `part` (a
    `loadgen._Part`): a non-OK status is counted as an error by its gRPC code's name. The
    target's url is `grpc://host:port`, its body a serialised `ModelInferRequest`."""
    import grpc

    address = target.url.removeprefix("grpc://")
    metadata = tuple(target.headers.items()) or None
    clock = time.perf_counter_ns
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)]) as channel:
        call = channel.unary_unary(MODEL_INFER)

        async def worker() -> None:
            while True:
                t0 = clock()
                if t0 >= window_end:
                    return
                try:
                    await call(target.body, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    if t0 >= part.window_start:
                        part.errors[exc.code().name] += 1
                    await asyncio.sleep(0.01)
                    continue
                part.answered(t0, 200)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
