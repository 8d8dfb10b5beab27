"""Running the app on uvicorn (uvloop + httptools): bound socket first, so port 0 works and the
real address is known; SIGTERM drains accepted requests before exit (uvicorn's graceful
shutdown, then the app's lifespan closes every batcher after its queue is empty).

A start either serves or fails with one line that says what, where and what to do: every
package is checked (signature, hashes, decryption key) and the TLS files are read before the
port opens; a port that cannot be bound, or a model that fails to load or warm up, stops the
start the same way. `on_ready` is called only once the models are loaded and the port
accepts connections, so an announced address is true.
"""

from __future__ import annotations

import errno
import gc
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bushu.errors import BushuError
from bushu.serve import logs
from bushu.serve.app import PlaneFactory, create_app, local_plane
from bushu.serve.memory import keep_heap_steady
from bushu.serve.settings import GrpcListen, ServeSettings

#: Seconds an idle kept-alive connection stays open (see `serve`).
KEEP_ALIVE_S = 75

if TYPE_CHECKING:
    from bushu.serve.workers import WorkerMemory


class StartupError(BushuError):
    """The server could not start; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"cannot listen on {host}:{port}: the port is in use; stop what holds it "
                               "or choose another --port (0: any free port)") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port") from None
    sock.set_inheritable(True)
    return sock


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    """Load the certificate and key as uvicorn will, so a bad file is named before the port opens."""
    if certfile is None and keyfile is None:
        return
    if certfile is None or keyfile is None:
        raise StartupError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for what, path, marker in (("certificate", certfile, b"CERTIFICATE-----"), ("private key", keyfile, b"PRIVATE KEY-----")):
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise StartupError(f"TLS {what} {path}: {exc.strerror}") from None
        if marker not in pem:
            raise StartupError(f"TLS {what} {path}: not a PEM {what} (no '-----BEGIN …{marker.decode()}' block)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(f"TLS certificate {certfile} and private key {keyfile} cannot be used together ({exc}); "
                           "give the PEM private key that matches the certificate") from None


def check_repository(paths: list[Path], settings: ServeSettings) -> int:
    """Refuse to start with a package the server would refuse to load, saying which and why."""
    from bushu.package.files import PackageFiles
    from bushu.serve.metrics import ServerMetrics
    from bushu.serve.repository import ModelRepository, check_package

    available = ModelRepository(paths, settings, ServerMetrics()).available()
    for path in available.values():
        try:
            manifest = check_package(path, settings.require_signature)
            if manifest.encryption is not None and manifest.encryption.files:  # the key opens it, or say so now
                PackageFiles(path, manifest, settings.decrypt_key).read(manifest.encryption.files[0])
        except BushuError as exc:
            raise StartupError(f"cannot serve {path}: {exc}") from exc
    return len(available)


class _StartupWatch:
    """ASGI wrapper that keeps a failed lifespan startup's exception for the one-line report,
    instead of letting uvicorn log its traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def quiet(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet)
        except BaseException as exc:
            self.error = self.error or exc
            raise


class _DropStartupFailed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Application startup failed" not in record.getMessage()


def serve(
    paths: list[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    on_ready: Callable[[str, str, int], None] | None = None,
    graceful_timeout: float = 30.0,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    grpc_port: int | None = None,
    on_grpc_ready: Callable[[str, int], None] | None = None,
    workers: int = 1,
    worker_setup: Callable[[], None] | None = None,
    on_workers: Callable[[list[WorkerMemory]], None] | None = None,
    dataplane: PlaneFactory | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; raise `StartupError` (one line) if the server cannot start.
    With `grpc_port`, V2 over gRPC is served on `host` too, with the same TLS files
    (`on_grpc_ready` hears its port just before `on_ready`). `workers` > 1 runs that many
    processes on the one port (`serve.workers`); `worker_setup` runs first in each (logging),
    and `on_workers` hears each one's memory once all are ready."""
    settings = settings or ServeSettings()
    check_tls(ssl_certfile, ssl_keyfile)
    check_repository(paths, settings)
    if grpc_port is not None and workers > 1:
        raise StartupError("cannot start: gRPC is served from one process; it does not go with workers yet")
    grpc = None if grpc_port is None else GrpcListen(f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}",
                                                      ssl_certfile, ssl_keyfile)
    sock = bind(host, port)
    try:
        if workers > 1:
            from bushu.serve.workers import supervise

            supervise(paths, settings, sock, workers, on_ready=on_ready, on_workers=on_workers,
                      setup=worker_setup, graceful_timeout=graceful_timeout,
                      ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
        else:
            run(paths, settings, sock, on_ready=on_ready, graceful_timeout=graceful_timeout,
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, dataplane=dataplane or local_plane,
                grpc=grpc, on_grpc_ready=on_grpc_ready)
    finally:
        sock.close()


def run(
    paths: list[Path],
    settings: ServeSettings,
    sock: socket.socket,
    *,
    on_ready: Callable[[str, str, int], None] | None = None,
    graceful_timeout: float = 30.0,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    dataplane: PlaneFactory = local_plane,
    grpc: GrpcListen | None = None,
    on_grpc_ready: Callable[[str, int], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
) -> None:
    """One uvicorn server on an already bound socket (one worker's whole life), and gRPC
    beside it where `grpc` says. `on_stopped` runs once every request is answered, before
    uvicorn re-raises the stopping signal (which ends the process without `finally` blocks)."""
    import uvicorn

    bound_host, bound_port = sock.getsockname()[:2]
    keep_heap_steady()
    app = create_app(paths, settings, grpc=grpc, dataplane=dataplane)
    watch = _StartupWatch(app)
    config = uvicorn.Config(
        watch,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,  # bushu's own access log (serve/access_log.py) has the model and request id
        timeout_graceful_shutdown=graceful_timeout,
        backlog=4096,
        # An idle kept-alive connection is closed by the client, not by us while a request is on
        # its way: uvicorn's 5 s is shorter than client pools keep connections (aiohttp 15 s), and
        # a request sent as the server closes is lost (ServerDisconnectedError, reset).
        timeout_keep_alive=KEEP_ALIVE_S,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    uvicorn_errors = logging.getLogger("uvicorn.error")
    uvicorn_errors.addFilter(_DropStartupFailed())
    scheme = "https" if ssl_certfile else "http"

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)  # models loaded and warmed up, then the port listens
            if self.started and grpc is not None and on_grpc_ready is not None:
                on_grpc_ready(bound_host, app.state.grpc.port)
            # What start-up made lives as long as the server: out of the collector's sight, so a
            # full collection does not walk it again and again under load (a p99 spike each time)
            gc.collect()
            gc.freeze()
            if self.started and on_ready is not None:
                on_ready(scheme, bound_host, bound_port)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)  # every request answered, then the lifespan's end
            if logs.access_lines is not None:  # before uvicorn re-raises SIGTERM, which ends the process
                logs.access_lines.flush()
            if on_stopped is not None:
                on_stopped()

    try:
        Server(config).run(sockets=[sock])
    except SystemExit:
        if watch.error is None:
            raise
        error = watch.error
        if isinstance(error, BushuError):
            raise StartupError(f"cannot start: {error}") from error
        raise StartupError(f"cannot start: loading the models failed with {type(error).__name__}: {error} "
                           "(`bushu --debug serve …` shows the traceback)") from error
