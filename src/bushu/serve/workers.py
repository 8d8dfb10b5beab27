"""`bushu serve --workers N`: N server processes on one port, supervised by the first.

The supervisor binds the port once and hands the listening socket to N spawned workers, each a
whole bushu server (its own models, batchers and event loop) accepting from that one socket.
Chosen over SO_REUSEPORT because: the port is bound once, so `--port 0` works and the
announced address is true; no other process can bind into the group; and a worker that exits
leaves no accept queue of its own behind (with SO_REUSEPORT the connections the kernel had
already hashed to a closed socket are reset). The kernel wakes one waiting worker per
connection; a busy worker is not waiting in accept, so load spreads to the idle ones.
Workers are spawned, not forked: ONNX Runtime, OpenVINO and torch keep thread pools that do
not survive a fork.

What is shared, and how:
- metrics: prometheus-client's multiprocess mode in a fresh temp folder (`serve.metrics`);
- the repository: a control log every worker follows (`serve.shared_repository`);
- shutdown: SIGTERM (or SIGINT) to the supervisor is passed to every worker, each drains its
  accepted requests (uvicorn's graceful shutdown, then its batchers), then the folder goes.
A worker that dies unexpectedly is replaced; the new one catches up from the control log.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from bushu.serve.settings import ServeSettings

_START_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WorkerMemory:
    """One process's memory: `rss` counts every page it maps; `pss` splits shared pages among
    the processes sharing them, so the workers' `pss` add up to what they really use."""

    pid: int
    rss: int
    pss: int


def memory(pid: int) -> WorkerMemory:
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                fields[key] = int(value.split()[0]) * 1024
    return WorkerMemory(pid, fields.get("Rss", 0), fields.get("Pss", 0))


def _die_with_parent(parent: int) -> None:
    """A supervisor killed outright (SIGKILL) must not leave its workers serving: Linux sends
    them SIGTERM then (they drain and exit)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(index: int, parent: int, paths: list[Path], settings: ServeSettings, sock: socket.socket,
            control: Path, events: Any, setup: Callable[[], None] | None, options: dict[str, Any]) -> None:
    """One worker process: a whole server on the shared socket, following the control log."""
    from bushu.serve.server import StartupError, run
    from bushu.serve.shared_repository import shared_plane

    _die_with_parent(parent)
    if setup is not None:
        setup()

    def ready(scheme: str, host: str, port: int) -> None:
        events.put(("ready", index, os.getpid()))

    def stopped() -> None:
        if os.getppid() != parent:  # the supervisor was killed outright and cannot remove the folder
            shutil.rmtree(control.parent, ignore_errors=True)

    try:
        run(paths, settings, sock, on_ready=ready, on_stopped=stopped, dataplane=shared_plane(control), **options)
    except StartupError as exc:
        events.put(("failed", index, str(exc)))
        raise SystemExit(1) from None


class _Supervisor:
    def __init__(self, paths: list[Path], settings: ServeSettings, sock: socket.socket, count: int,
                 setup: Callable[[], None] | None, options: dict[str, Any]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"bushu-workers-{os.getpid()}-"))
        self.control = self.folder / "control"
        self.metrics = self.folder / "metrics"
        self.control.mkdir()
        self.metrics.mkdir()
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.args = (paths, settings, sock)
        self.setup = setup
        self.options = options
        self.processes: list[multiprocessing.process.BaseProcess] = [None] * count  # type: ignore[list-item]
        self.stopping = threading.Event()

    def start(self, index: int) -> None:
        process = self.context.Process(
            target=_worker, name=f"bushu-worker-{index}", daemon=False,
            args=(index, os.getpid(), *self.args, self.control, self.events, self.setup, self.options),
        )
        process.start()
        self.processes[index] = process

    def wait_ready(self) -> None:
        from bushu.serve.server import StartupError

        ready: set[int] = set()
        while len(ready) < len(self.processes):
            try:
                what, index, detail = self.events.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in self.processes if not p.is_alive()]
                if dead:
                    raise StartupError(f"worker {dead[0].name} exited with {dead[0].exitcode} while starting") from None
                if self.stopping.is_set():
                    raise StartupError("stopped while the workers were starting") from None
                continue
            if what == "failed":
                raise StartupError(detail)
            ready.add(index)

    def watch(self) -> None:
        """Until told to stop: replace a worker that died (its metrics and ack go with it)."""
        from prometheus_client import multiprocess

        while not self.stopping.is_set():
            wait([p.sentinel for p in self.processes], timeout=0.5)
            for index, process in enumerate(self.processes):
                if process.is_alive() or self.stopping.is_set():
                    continue
                self._forget(process.pid, multiprocess)
                self.start(index)

    def _forget(self, pid: int | None, multiprocess: Any) -> None:
        if pid is None:
            return
        multiprocess.mark_process_dead(pid, str(self.metrics))
        with contextlib.suppress(OSError):
            (self.control / f"ack-{pid}").unlink()

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each drains), wait, then kill what is left."""
        for process in self.processes:
            if process is not None and process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            if process is not None:
                process.join(grace)
                if process.is_alive():
                    process.kill()
                    process.join(5)
        self.events.close()
        self.events.join_thread()
        shutil.rmtree(self.folder, ignore_errors=True)


def supervise(
    paths: list[Path],
    settings: ServeSettings,
    sock: socket.socket,
    count: int,
    *,
    on_ready: Callable[[str, str, int], None] | None = None,
    on_workers: Callable[[list[WorkerMemory]], None] | None = None,
    setup: Callable[[], None] | None = None,
    graceful_timeout: float = 30.0,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> None:
    """Run `count` workers on `sock` until SIGTERM/SIGINT; `StartupError` if any cannot start."""
    options = {"graceful_timeout": graceful_timeout, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    supervisor = _Supervisor(paths, settings, sock, count, setup, options)
    previous = {sig: signal.signal(sig, lambda *_: supervisor.stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    # the workers inherit it from the environment at spawn: every metric they create is shared
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(supervisor.metrics)
    try:
        for index in range(count):
            supervisor.start(index)
        supervisor.wait_ready()
        host, port = sock.getsockname()[:2]
        if on_ready is not None:
            on_ready("https" if ssl_certfile else "http", host, port)
        if on_workers is not None:
            on_workers([memory(p.pid) for p in supervisor.processes if p.pid is not None])
        supervisor.watch()
    finally:
        supervisor.stop(graceful_timeout + 10)
        if saved is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved
        for sig, handler in previous.items():
            signal.signal(sig, handler)
