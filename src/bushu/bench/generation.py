"""Generation load: concurrent streams of token-id prompts against `/v1/completions`, timed per
token from the server-sent events — output tokens/s, time to first token, inter-token latency.

Prompts are token ids (OpenAI's `prompt` as a list of ints), so every server under test sees
the same tokens whatever its tokenizer; `ignore_eos` makes each answer exactly `new_tokens` long.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import orjson

from bushu.errors import BushuError


@dataclass
class GenerationResult:
    streams: int
    tokens: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        pct = lambda xs, q: float(np.percentile(xs, q)) * 1000 if xs else float("nan")  # noqa: E731
        return {"tokens_per_s": self.tokens / self.seconds if self.seconds else 0.0,
                "ttft_p50_ms": pct(self.ttft, 50), "ttft_p99_ms": pct(self.ttft, 99),
                "itl_p50_ms": pct(self.itl, 50), "itl_p99_ms": pct(self.itl, 99)}


async def _one(client, url: str, model: str, prompt: list[int], new_tokens: int, result: GenerationResult) -> None:
    body = {"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    last, tokens = None, 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        if response.status_code != 200:
            result.errors.append(f"{response.status_code}: {(await response.aread())[:200]!r}")
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if "error" in chunk:
                result.errors.append(chunk["error"])
                return
            if not chunk.get("choices"):
                tokens = chunk["usage"]["completion_tokens"]
                continue
            now = time.perf_counter()
            if last is None:
                result.ttft.append(now - start)
            else:
                result.itl.append(now - last)
            last = now
    result.tokens += tokens


async def _run(url: str, model: str, prompts: list[list[int]], new_tokens: int, streams: int) -> GenerationResult:
    import httpx

    result = GenerationResult(streams)
    queue = list(prompts)
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            while queue:
                await _one(client, url, model, queue.pop(0), new_tokens, result)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(streams)))
        result.seconds = time.perf_counter() - start
    return result


def run_generation(url: str, model: str, prompts: list[list[int]], *, new_tokens: int, streams: int) -> GenerationResult:
    """Send every prompt, `streams` at a time, each to `new_tokens` tokens; time it all."""
    if not prompts or streams < 1 or new_tokens < 1:
        raise BushuError("a generation bench needs prompts, at least one stream and one new token", status=400)
    return asyncio.run(_run(url.rstrip("/"), model, prompts, new_tokens, streams))


def generation_model(url: str) -> str:
    """The one generation model a server lists at /v1/models."""
    import httpx

    listed = [m["id"] for m in httpx.get(f"{url.rstrip('/')}/v1/models", timeout=10).json().get("data", [])]
    if len(listed) != 1:
        raise BushuError(f"name the model to bench with --model; the server generates with {listed or 'none'}", status=400)
    return listed[0]
