"""Dynamic batching for one model version.

Requests queue; a batch closes when it holds `max_batch_size` rows or `max_queue_delay` after
its first request arrived. Only requests whose non-batch dimensions agree are batched together
(grouping, not padding: padding would change what a recurrent or attention model computes).
The queue is bounded — a full queue is refused at once with 503 and Retry-After — and each
request has a deadline (504). Batches run in a thread pool off the event loop on one of
`instances` model instances, and the next batch is gathered while the previous one runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bushu.errors import BushuError, InvalidInput
from bushu.runtime.base import Model, check_inputs


class Overloaded(BushuError):
    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(BushuError):
    status = 504


@dataclass
class BatchObserver:
    """Hooks the metrics module fills in; the batcher knows nothing of Prometheus."""

    queued: Callable[[float], None] = lambda seconds: None
    computed: Callable[[float, int], None] = lambda seconds, rows: None
    depth: Callable[[int], None] = lambda depth: None


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple
    future: asyncio.Future
    enqueued: float
    deadline: float
    outputs: list[str] = field(default_factory=list)


class Batcher:
    def __init__(
        self,
        instances: Sequence[Model],
        *,
        max_batch_size: int = 32,
        max_queue_delay: float = 0.005,
        max_queue_size: int = 1024,
        timeout: float = 30.0,
        executor: ThreadPoolExecutor | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if not instances:
            raise ValueError("a batcher needs at least one model instance")
        self.model = instances[0]
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.max_queue_size = max_queue_size
        self.timeout = timeout
        self.observer = observer or BatchObserver()
        self._instances = list(instances)
        self._free: asyncio.Queue[Model] = asyncio.Queue()
        for instance in instances:
            self._free.put_nowait(instance)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = executor or ThreadPoolExecutor(len(instances), thread_name_prefix="bushu-infer")
        self._own_executor = executor is None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._collect())
        self._batchable = self.model.manifest.inputs[0].shape[:1] == [-1]
        # computed once: the request path only looks them up
        self._output_names = [s.name for s in self.model.manifest.outputs]
        self._known_outputs = frozenset(self._output_names)

    # -- the request side ---------------------------------------------------------------------

    async def infer(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Queue one request (a batch of its own rows) and wait for its rows of the result."""
        arrays = check_inputs(self.model.manifest.inputs, inputs)
        wanted = outputs or self._output_names
        unknown = [n for n in wanted if n not in self._known_outputs]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model gives {self._output_names}")
        if self._queue.qsize() >= self.max_queue_size:
            raise Overloaded(f"the queue for {self.model.manifest.name} is full ({self.max_queue_size} requests)")
        first = next(iter(arrays.values()))
        rows = first.shape[0] if self._batchable and first.ndim else 1
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in arrays.items())
        now = time.monotonic()
        pending = _Pending(arrays, rows, key, asyncio.get_running_loop().create_future(), now, now + self.timeout, wanted)
        self._inflight += 1
        self._idle.clear()
        self._queue.put_nowait(pending)
        self.observer.depth(self._queue.qsize())
        try:
            result = await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within {self.timeout:g} s") from None
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        return {name: result[name] for name in wanted}

    # -- the batching side --------------------------------------------------------------------

    async def _collect(self) -> None:
        carry: _Pending | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, rows = [first], first.rows
            close_at = first.enqueued + self.max_queue_delay
            while rows < self.max_batch_size and self._batchable:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = close_at - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if nxt.key != first.key or rows + nxt.rows > self.max_batch_size:
                    carry = nxt  # starts the next batch
                    break
                batch.append(nxt)
                rows += nxt.rows
            self.observer.depth(self._queue.qsize())
            instance = await self._free.get()
            asyncio.get_running_loop().create_task(self._dispatch(instance, batch))

    async def _dispatch(self, instance: Model, batch: list[_Pending]) -> None:
        now = time.monotonic()
        live = []
        for item in batch:
            if item.future.done():
                continue
            if now > item.deadline:
                item.future.set_exception(DeadlineExceeded(f"waited past its {self.timeout:g} s deadline"))
                continue
            self.observer.queued(now - item.enqueued)
            live.append(item)
        try:
            if not live:
                return
            start = time.perf_counter()
            try:
                result = await asyncio.get_running_loop().run_in_executor(self._executor, _run, instance, live)
            except Exception as exc:  # the model failed: every request in the batch hears why
                error = exc if isinstance(exc, BushuError) else BushuError(f"inference failed: {exc}")
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(error)
                return
            self.observer.computed(time.perf_counter() - start, sum(i.rows for i in live))
            for item, part in zip(live, result):
                if not item.future.done():
                    item.future.set_result(part)
        finally:
            self._free.put_nowait(instance)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def drain(self) -> None:
        """Wait until every accepted request has been answered."""
        await self._idle.wait()

    async def close(self) -> None:
        await self.drain()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self._own_executor:
            self._executor.shutdown(wait=True)
        for instance in self._instances:
            instance.close()


def _run(model: Model, batch: list[_Pending]) -> list[dict[str, np.ndarray]]:
    """One model call for the whole batch, then split the rows back per request (worker thread)."""
    names = list(dict.fromkeys(n for item in batch for n in item.outputs))
    if len(batch) == 1:
        return [model.run_checked(batch[0].inputs, names)]
    merged = {k: np.concatenate([item.inputs[k] for item in batch]) for k in batch[0].inputs}
    out = model.run_checked(merged, names)
    parts, start = [], 0
    for item in batch:
        parts.append({k: v[start : start + item.rows] for k, v in out.items()})
        start += item.rows
    return parts
