"""A closed-loop HTTP load generator that costs the machine little.

C workers each send the same pre-encoded request over a kept-alive connection (aiohttp on
uvloop when installed), wait for the answer, and send again. Requests that start during the
warm-up are not counted; a request counts when it starts inside the measured window, which
lasts `duration` seconds. Latencies are `perf_counter_ns` differences kept in numpy arrays.
When one client process saturates its core, `processes` splits the workers over several
processes that start their windows at the same wall-clock instant.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from bushu.bench.target import Target


@dataclass
class LoadResult:
    """What the measured window saw."""

    #: Latency of each successful request, nanoseconds.
    latencies_ns: np.ndarray
    #: When each successful request started, seconds from the window's start.
    started_s: np.ndarray
    #: Failed requests by HTTP status ("503") or exception name ("ServerDisconnectedError").
    errors: dict[str, int]
    duration_s: float
    concurrency: int
    processes: int = 1
    label: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return int(self.latencies_ns.size)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.requests:
            return float("nan")
        return float(np.percentile(self.latencies_ns, q)) / 1e6

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.error_count,
            "req_per_s": self.throughput,
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "max_ms": float(self.latencies_ns.max()) / 1e6 if self.requests else float("nan"),
        }


@dataclass
class _Part:
    """What one process measured; both clients record into it the same way."""

    window_start: int
    latencies_ns: list[int] = field(default_factory=list)
    started_ns: list[int] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    def answered(self, t0: int, status: int) -> None:
        """A response to a request sent at `t0`: timed if 200, counted by status if not."""
        if t0 < self.window_start:
            return  # warm-up
        if status == 200:
            self.latencies_ns.append(time.perf_counter_ns() - t0)
            self.started_ns.append(t0 - self.window_start)
        else:
            self.errors[str(status)] += 1

    async def failed(self, t0: int, exc: BaseException) -> None:
        """A request that got no response, counted by the exception's name."""
        if t0 >= self.window_start:
            self.errors[type(exc).__name__] += 1
        await asyncio.sleep(0.01)  # a refused connection must not spin the loop


async def _worker(session, target: Target, window_end: int, part: _Part) -> None:
    import aiohttp

    post, url, body, headers = session.post, target.url, target.body, target.headers
    clock = time.perf_counter_ns
    while True:
        t0 = clock()
        if t0 >= window_end:
            return
        try:
            async with post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            await part.failed(t0, exc)
            continue
        part.answered(t0, status)


async def _drive(target: Target, concurrency: int, start_wall: float, warmup: float, duration: float,
                 timeout: float, client: str) -> _Part:
    # all processes begin at the same wall-clock instant, then measure on the monotonic clock
    await asyncio.sleep(max(0.0, start_wall - time.time()))
    now = time.perf_counter_ns()
    window_start = now + int(warmup * 1e9)
    window_end = window_start + int(duration * 1e9)
    part = _Part(window_start)
    if client == "grpc":  # V2 over gRPC (bench/grpc_load.py)
        from bushu.bench.grpc_load import grpc_workers

        await asyncio.wait_for(grpc_workers(target, concurrency, window_end, part), warmup + duration + timeout)
        return part
    if client == "raw":
        workers = [asyncio.ensure_future(_raw_worker(target, window_end, part))
                   for _ in range(concurrency)]
        done, late = await asyncio.wait(workers, timeout=warmup + duration + timeout)
        for task in late:  # still waiting for an answer `timeout` s after the window closed
            task.cancel()
            part.errors["Timeout"] += 1
        await asyncio.gather(*workers, return_exceptions=True)
        return part
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None, enable_cleanup_closed=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
        skip_auto_headers=("User-Agent", "Accept-Encoding"), auto_decompress=False,
    ) as session:
        await asyncio.gather(*(_worker(session, target, window_end, part) for _ in range(concurrency)))
    return part


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection: write the pre-built request bytes, let httptools (the
    parser uvicorn uses) frame the answer, keep only its status. No headers or body objects are
    built per request, which is what makes it cheaper than a general client."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._error = httptools.HttpParserError
        self._waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except self._error as exc:
            self._finish(exc)
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():  # the server closes after this answer: reconnect
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        self._finish(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(exc or ConnectionResetError("the server closed the connection"))

    def _finish(self, outcome: int | BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter


def _raw_request(target: Target) -> tuple[str, int, bytes]:
    parts = urlsplit(target.url)
    if parts.scheme != "http":
        raise ValueError("the raw client speaks plain http only; use client='aiohttp' for https")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(target.body)}"]
    lines += [f"{k}: {v}" for k, v in target.headers.items() if k.lower() not in ("host", "content-length")]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + target.body


async def _raw_worker(target: Target, window_end: int, part: _Part) -> None:
    loop = asyncio.get_running_loop()
    host, port, request = _raw_request(target)
    clock = time.perf_counter_ns
    connection: _Connection | None = None
    try:
        while True:
            t0 = clock()
            if t0 >= window_end:
                return
            try:
                if connection is None or connection.closed:
                    _, connection = await loop.create_connection(_Connection, host, port)
                status = await connection.send(request)  # the run's own deadline bounds the wait
            except Exception as exc:  # every failure is counted, by its name
                if connection is not None and connection.transport is not None:
                    connection.transport.close()
                connection = None
                await part.failed(t0, exc)
                continue
            part.answered(t0, status)
    finally:
        if connection is not None and connection.transport is not None:
            connection.transport.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_part(target: Target, concurrency: int, start_wall: float, warmup: float, duration: float,
              timeout: float, client: str) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    loop = _new_loop()
    try:
        part = loop.run_until_complete(_drive(target, concurrency, start_wall, warmup, duration, timeout, client))
    finally:
        loop.close()
    return (np.asarray(part.latencies_ns, dtype=np.int64), np.asarray(part.started_ns, dtype=np.int64),
            dict(part.errors))


def run_load(
    target: Target,
    *,
    concurrency: int = 32,
    duration: float = 10.0,
    warmup: float = 2.0,
    processes: int = 1,
    timeout: float = 30.0,
    client: str = "raw",
) -> LoadResult:
    """Drive `target` with `concurrency` closed-loop clients for `warmup` + `duration` seconds.

    `client`: "raw" (default; pre-built request bytes on asyncio connections, httptools parsing
    the answers, plain http only) or "aiohttp" (a general client, https too; several times the
    CPU per request, which a benchmark on few cores takes from the server it measures) or
    "grpc" (a `bench.grpc_load.grpc_target`: V2 ModelInfer over gRPC).
    """
    if concurrency < 1 or processes < 1 or duration <= 0 or warmup < 0:
        raise ValueError("concurrency and processes must be at least 1, duration positive, warm-up not negative")
    if client not in ("raw", "aiohttp", "grpc"):
        raise ValueError(f"client must be 'raw', 'aiohttp' or 'grpc', not {client!r}")
    processes = min(processes, concurrency)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    if processes == 1:
        parts = [_run_part(target, concurrency, time.time(), warmup, duration, timeout, client)]
    else:
        ctx = multiprocessing.get_context("spawn")
        start_wall = time.time() + 1.0 + 0.2 * processes  # time for the children to import and connect
        with ctx.Pool(processes) as pool:
            parts = pool.starmap(_run_part, [(target, n, start_wall, warmup, duration, timeout, client) for n in shares])
    errors: Counter = Counter()
    for _, _, part_errors in parts:
        errors.update(part_errors)
    started = np.concatenate([p[1] for p in parts])
    order = np.argsort(started, kind="stable")
    return LoadResult(
        latencies_ns=np.concatenate([p[0] for p in parts])[order],
        started_s=started[order] / 1e9,
        errors=dict(errors),
        duration_s=duration,
        concurrency=concurrency,
        processes=processes,
        label=target.label,
        extra={"client": client},
    )
