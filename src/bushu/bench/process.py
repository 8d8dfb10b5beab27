"""Starting a server in a subprocess for a benchmark, waiting until it is ready, stopping it.

`bushu serve --port 0` prints the address it bound; other servers get a free port up front.
Readiness is polled (never a fixed sleep); stopping is SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from bushu.bench.target import Unreachable, http
from bushu.errors import BushuError

_ANNOUNCE = re.compile(r"serving on (http://\S+)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server subprocess; `url` is known once `start()` returns (the server then answers ready)."""

    def __init__(self, command: Sequence[str], *, url: str | None = None, ready_path: str = "/v2/health/ready",
                 env: dict[str, str] | None = None, name: str = "server", startup_timeout: float = 120.0) -> None:
        self.command = list(command)
        self.url = url
        self.ready_path = ready_path
        self.env = {**os.environ, **(env or {})}
        self.name = name
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self._tail: deque[str] = deque(maxlen=40)
        self._announced = threading.Event()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._tail.append(line.rstrip())
            match = _ANNOUNCE.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._announced.set()

    def _failed(self, why: str) -> BushuError:
        output = "\n".join(self._tail)
        return BushuError(f"{self.name} {why}" + (f"; its last output:\n{output}" if output else ""))

    def start(self) -> ServerProcess:
        if self.proc is not None:  # a second start would leave the first process running, unowned
            raise RuntimeError(f"{self.name} was already started")
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=self.env, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True, name=f"{self.name}-output")
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()  # reads the last lines
                raise self._failed(f"exited with status {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                self.stop()
                raise self._failed(f"was not ready within {self.startup_timeout:g} s")
            if self.url is not None:
                try:
                    status, _ = http("GET", self.url + self.ready_path, timeout=2.0)
                except Unreachable:
                    status = 0
                if status == 200:
                    return self
            time.sleep(0.05)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._terminate(grace)
        self._reader.join(5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _terminate(self, grace: float) -> None:
        assert self.proc is not None
        # the server runs in a session of its own: signal its whole group (workers it forked too)
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:  # anything of its group still left once the server itself is gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bushu_serve(packages: Sequence[Path], *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """`bushu serve PACKAGE... --port 0 ARGS` in a subprocess, with this interpreter."""
    command = [sys.executable, "-c", "from bushu.cli import app; app()", "serve",
               *(str(p) for p in packages), "--port", "0", *args]
    return ServerProcess(command, env=env, name="bushu serve")
