"""Dynamic batching for one model version.

Requests queue; a batch closes when it holds `max_batch_size` rows or `max_queue_delay` after
its first request arrived. Only requests whose non-batch dimensions agree are batched together
(grouping, not padding: padding would change what a recurrent or attention model computes).
The queue is bounded in requests and in bytes — a full queue is refused at once with 503 and
Retry-After — and each request has a deadline (504). Batches run in a thread pool off the
event loop on one of `instances` model instances, and the next batch is gathered while the
previous one runs.

One client can never fail another's request: every request is checked against the model
(names, datatypes, shapes, the value ranges of integer inputs, rows) before it joins a batch,
and a batch that still fails in the model is re-run one request at a time, so only the
request that caused the error hears of it. The task that gathers batches is supervised:
an exception in it fails only the requests it held, and it starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bushu.errors import BushuError, InvalidInput, Overloaded
from bushu.package.manifest import TensorSpec
from bushu.runtime.base import Model, check_inputs
from bushu.serve.asgi import PayloadTooLarge
from bushu.serve.memory import release_freed

log = logging.getLogger("bushu.serve")
#: The batcher the current request holds (see `Batcher.hold`): it may still enter it while it closes.
_holding: contextvars.ContextVar[Batcher | None] = contextvars.ContextVar("bushu_batcher_held", default=None)


class DeadlineExceeded(BushuError):
    status = 504


@dataclass
class BatchObserver:
    """Hooks the metrics module fills in; the batcher knows nothing of Prometheus."""

    queued: Callable[[float], None] = lambda seconds: None
    computed: Callable[[float, int, int], None] = lambda seconds, rows, requests: None
    depth: Callable[[int], None] = lambda depth: None


class ValueRanges:
    """The `range` of each integer input in the manifest, checked with one min and one max per
    array (vectorised: no Python loop over elements)."""

    def __init__(self, specs: Sequence[TensorSpec]) -> None:
        self._ranges = [(s.name, *s.range) for s in specs if s.range is not None]

    def check(self, arrays: dict[str, np.ndarray]) -> None:
        for name, low, high in self._ranges:
            array = arrays[name]
            if array.size == 0 or (low <= array.min() and array.max() < high):
                continue
            bad = array[(array < low) | (array >= high)].flat[0]
            raise InvalidInput(f"input {name!r}: value {int(bad)} is outside its range [{low}, {high})")


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
        max_queue_bytes: int = 256 * 1024 * 1024,
        max_request_rows: int | None = None,
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
        self.max_queue_bytes = max_queue_bytes
        #: More rows in one request → 413 (not split: a request's rows run in one batch, so its
        #: answer comes from one model call, and one client cannot take every batch slot).
        self.max_request_rows = max_request_rows or max_batch_size
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
        self._queued_bytes = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        #: Requests the collector has taken from the queue but not yet dispatched.
        self._hand: list[_Pending] = []
        self._ranges = ValueRanges(self.model.manifest.inputs)
        self._batchable = self.model.manifest.inputs[0].shape[:1] == [-1]
        self._start_collector()
        # computed once: the request path only looks them up
        self._output_names = [s.name for s in self.model.manifest.outputs]
        self._known_outputs = frozenset(self._output_names)

    # -- the request side ---------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Count the caller as an accepted request until it leaves: `close()` waits for it.
        Routes that prepare their tensors off the loop (the app routes) hold the batcher
        from the moment they looked the model up, so a reload in that gap loses nothing."""
        self._admit()
        token = _holding.set(self)
        try:
            yield
        finally:
            _holding.reset(token)
            self._leave()

    def _admit(self) -> None:
        if self._closed and _holding.get() is not self:  # a request already holding it goes on
            raise Overloaded(f"{self.model.manifest.name} is being replaced or unloaded; retry", retry_after=1)
        self._inflight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    async def infer(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Queue one request (a batch of its own rows) and wait for its rows of the result."""
        arrays = check_inputs(self.model.manifest.inputs, inputs)
        self._ranges.check(arrays)
        wanted = outputs or self._output_names
        unknown = [n for n in wanted if n not in self._known_outputs]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model gives {self._output_names}")
        first = next(iter(arrays.values()))
        rows = first.shape[0] if self._batchable and first.ndim else 1
        if rows > self.max_request_rows:
            raise PayloadTooLarge(f"the request has {rows} rows; {self.model.manifest.name} takes at most "
                                  f"{self.max_request_rows} per request (send them in several requests)")
        size = sum(a.nbytes for a in arrays.values())
        if size > self.max_queue_bytes:
            raise PayloadTooLarge(f"the request's tensors hold {size} bytes; the queue holds at most "
                                  f"{self.max_queue_bytes}")
        name = self.model.manifest.name
        if self._queue.qsize() >= self.max_queue_size:
            raise Overloaded(f"the queue for {name} is full ({self.max_queue_size} requests)")
        if self._queued_bytes + size > self.max_queue_bytes:
            raise Overloaded(f"the queue for {name} is full ({self._queued_bytes} of {self.max_queue_bytes} bytes)")
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in arrays.items())
        # `hold()` without its context variable (nothing inside holds again): the request path's
        # cheapest form of the same count
        self._admit()
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        future = loop.create_future()
        pending = _Pending(arrays, rows, key, future, now, now + self.timeout, wanted)
        self._queued_bytes += size
        self._queue.put_nowait(pending)
        self.observer.depth(self._queue.qsize())
        # The deadline is one timer that fails the future (a tenth of what wait_for(shield())
        # cost per request); a batch that later answers it finds it done and skips it.
        timer = loop.call_later(self.timeout, _expire, future, self.timeout)
        try:
            result = await future
        finally:
            timer.cancel()
            self._queued_bytes -= size
            self._leave()
        return {name: result[name] for name in wanted}

    # -- the batching side --------------------------------------------------------------------

    def _start_collector(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect())
        self._task.add_done_callback(self._collector_ended)

    def _collector_ended(self, task: asyncio.Task) -> None:
        """Supervision: an exception in the collector fails the requests it held (500) and
        starts a fresh collector, so every later request is still served."""
        if task.cancelled():
            return
        exc = task.exception()
        log.error("the batch collector of %s failed; restarting it", self.model.manifest.name,
                  exc_info=(type(exc), exc, exc.__traceback__) if exc else None)
        error = BushuError(f"batching failed: {type(exc).__name__}: {exc}")
        for item in self._hand:
            if not item.future.done():
                item.future.set_exception(error)
        self._hand = []
        self._start_collector()

    async def _collect(self) -> None:
        while True:
            first = self._hand[0] if self._hand else await self._queue.get()
            batch, rows = [first], first.rows
            self._hand = batch
            close_at = first.enqueued + self.max_queue_delay
            carry: _Pending | None = None
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
                    self._hand = [*batch, carry]
                    break
                batch.append(nxt)
                rows += nxt.rows
            self.observer.depth(self._queue.qsize())
            instance = await self._free.get()
            asyncio.get_running_loop().create_task(self._dispatch(instance, batch))
            self._hand = [carry] if carry is not None else []

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
            if live:
                await self._run_batch(instance, live)
        finally:
            self._free.put_nowait(instance)

    async def _run_batch(self, instance: Model, live: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            result = await loop.run_in_executor(self._executor, _run, instance, live)
        except Exception as exc:
            if len(live) == 1:
                return _fail(live[0], exc)
            # One request may have caused it: run each on its own, so only that one fails.
            log.warning("a batch of %d requests to %s failed (%s); running them one by one",
                        len(live), self.model.manifest.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            for item in live:
                if item.future.done():
                    continue
                start = time.perf_counter()
                try:
                    (part,) = await loop.run_in_executor(self._executor, _run, instance, [item])
                except Exception as single:
                    _fail(item, single)
                else:
                    self.observer.computed(time.perf_counter() - start, item.rows, 1)
                    if not item.future.done():
                        item.future.set_result(part)
            return None
        self.observer.computed(time.perf_counter() - start, sum(i.rows for i in live), len(live))
        for item, part in zip(live, result):
            if not item.future.done():
                item.future.set_result(part)
        return None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def drain(self) -> None:
        """Wait until every accepted request has been answered."""
        await self._idle.wait()

    async def close(self) -> None:
        """Refuse new requests, answer every accepted one, then release the model instances —
        in a worker thread: a batch past its deadline may still be running, and a thread pool
        shut down on the event loop would stall every other request until it ends."""
        self._closed = True
        await self.drain()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=True)
        for instance in self._instances:
            instance.close()
        release_freed()  # what the instances held goes back to the system, not only to malloc


def _expire(future: asyncio.Future, timeout: float) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded(f"no answer within {timeout:g} s"))


def _fail(item: _Pending, exc: Exception) -> None:
    """The model failed on this request: its client hears why (a `BushuError` keeps its status)."""
    if not item.future.done():
        item.future.set_exception(exc if isinstance(exc, BushuError) else BushuError(f"inference failed: {exc}"))


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
