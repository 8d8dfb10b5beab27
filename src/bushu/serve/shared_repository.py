"""One model repository state across `bushu serve --workers N` processes.

A load or unload reaches whichever worker the kernel handed the connection to; every other
worker must follow, and the client's 200 must mean "ready everywhere". The workers share a
control folder (made by the supervisor, removed when it exits) holding an append-only log of
repository operations, one JSON line each, appended under an exclusive `flock`. Each worker
polls the log, applies new lines in order with the ordinary `ModelRepository.load/unload`, and
writes how many lines it has applied to `ack-<pid>`. The worker that took the request waits
until every live worker's ack has reached its line before answering, and answers with its own
outcome (every worker applies the same operation to the same folders, so they agree).

Why a file log and not a control socket to the supervisor: the log is also the state. A worker
that starts late (or is restarted after a crash) replays it and ends where the others are,
with no message to miss; the supervisor stays a plain process watcher. Operations are rare
(an operator's load/unload), so polling every 50 ms costs nothing that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bushu.errors import BushuError, InvalidInput, NotFound
from bushu.serve.metrics import ServerMetrics
from bushu.serve.repository import _MODEL_NAME, LoadedModel, ModelRepository
from bushu.serve.settings import ServeSettings

if TYPE_CHECKING:
    from bushu.serve.app import PlaneFactory

log = logging.getLogger("bushu.serve")
_POLL_S = 0.05


class NotEveryWorker(BushuError):
    status = 504


def ack_path(control: Path, pid: int) -> Path:
    return control / f"ack-{pid}"


class SharedRepository(ModelRepository):
    def __init__(self, roots: list[Path], settings: ServeSettings, metrics: ServerMetrics, control: Path,
                 *, ack_timeout_s: float = 300.0) -> None:
        super().__init__(roots, settings, metrics)
        self.control = control
        self.ack_timeout_s = ack_timeout_s
        self._log = control / "ops.jsonl"
        self._applied = 0  # lines of the log applied here
        self._offset = 0  # bytes of the log read here
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._watcher: asyncio.Task[None] | None = None

    # -- what a request asks for --------------------------------------------------------------

    async def load(self, name: str, actor: str = "anonymous") -> list[LoadedModel]:
        if self._watcher is None:  # the startup load (load_all) is each worker's own
            return await super().load(name, actor)
        if not _MODEL_NAME.match(name):
            raise InvalidInput(f"{name!r} is not a model name")
        if not any(n == name for (n, _) in self.available()):
            raise NotFound(f"no model {name!r} in the repository")
        await self._everywhere({"op": "load", "model": name, "by": actor})
        return [m for m in self.loaded() if m.name == name]

    async def unload(self, name: str, actor: str = "anonymous") -> None:
        if self._watcher is None:
            return await super().unload(name, actor)
        if not any(m.name == name for m in self.loaded()):
            raise NotFound(f"model {name!r} is not loaded")
        await self._everywhere({"op": "unload", "model": name, "by": actor})

    async def _everywhere(self, op: dict[str, str]) -> None:
        """Append `op` to the log, then wait until this worker applied it (its outcome is the
        answer) and every other live worker did too."""
        line = await asyncio.to_thread(self._append, op)
        mine = self._waiting[line] = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            await mine
        finally:
            self._waiting.pop(line, None)
        deadline = time.monotonic() + self.ack_timeout_s
        while (behind := self._behind(line + 1)):
            if time.monotonic() > deadline:
                raise NotEveryWorker(f"{op['op']} {op['model']}: worker(s) {', '.join(behind)} did not follow "
                                     f"within {self.ack_timeout_s:g} s")
            await asyncio.sleep(_POLL_S)

    def _append(self, op: dict[str, str]) -> int:
        """Append one line under the log's lock; return its index."""
        with open(self._log, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0)
                index = f.read().count(b"\n")
                f.write(json.dumps(op).encode() + b"\n")
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return index

    def _behind(self, count: int) -> list[str]:
        """The live workers (an ack file each; the supervisor removes a dead worker's) that have
        not yet applied `count` lines."""
        behind = []
        for ack in self.control.glob("ack-*"):
            with contextlib.suppress(OSError, ValueError):
                if int(ack.read_text() or 0) < count:
                    behind.append(ack.name.removeprefix("ack-"))
        return behind

    # -- following the log --------------------------------------------------------------------

    async def load_all(self) -> None:
        """Load what the folders hold, then catch up with the log: a model whose last operation
        was an unload stays unloaded (a restarted worker ends where the others are)."""
        await super().load_all()
        ops = self._read_new()
        last = {op["model"]: op["op"] for op in ops}
        for name, what in last.items():
            if what == "unload" and any(m.name == name for m in self.loaded()):
                await super().unload(name, "log")
        self._applied = len(ops)
        self._ack()
        self._wake = asyncio.Event()
        self._watcher = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        with contextlib.suppress(OSError):
            ack_path(self.control, os.getpid()).unlink()
        await super().close()

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL_S)
            self._wake.clear()
            for op in self._read_new():
                index, self._applied = self._applied, self._applied + 1
                outcome = self._waiting.get(index)
                try:
                    if op["op"] == "load":
                        await ModelRepository.load(self, op["model"], op["by"])
                    else:
                        await ModelRepository.unload(self, op["model"], op["by"])
                except Exception as exc:  # noqa: BLE001 — a failed operation must not stop the follower
                    if outcome is not None and not outcome.done():
                        outcome.set_exception(exc)
                    elif not isinstance(exc, NotFound):
                        log.error("worker %d: %s %s failed: %s", os.getpid(), op["op"], op["model"], exc)
                else:
                    if outcome is not None and not outcome.done():
                        outcome.set_result(None)
                self._ack()

    def _read_new(self) -> list[dict[str, str]]:
        try:
            with open(self._log, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [json.loads(line) for line in complete.splitlines()]

    def _ack(self) -> None:
        path = ack_path(self.control, os.getpid())
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(str(self._applied))
        os.replace(tmp, path)


def shared_plane(control: Path) -> PlaneFactory:
    """The `create_app(dataplane=...)` factory for one worker of a supervisor using `control`."""
    from bushu.serve.dataplane import DataPlane

    def build(paths: list[Path], settings: ServeSettings, metrics: ServerMetrics) -> DataPlane:
        return DataPlane(SharedRepository(paths, settings, metrics, control), metrics)

    return build
