"""Running the app on uvicorn (uvloop + httptools): bound socket first, so port 0 works and the
real address is known; SIGTERM drains accepted requests before exit (uvicorn's graceful
shutdown, then the app's lifespan closes every batcher after its queue is empty). Every
package is checked before the port opens, so a refused package stops the start with a reason."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from bushu.serve.app import create_app
from bushu.serve.settings import ServeSettings


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def check_repository(paths: list[Path], settings: ServeSettings) -> int:
    """Refuse to start with a package the server would refuse to load, saying which and why."""
    from bushu.serve.repository import ModelRepository, check_package
    from bushu.serve.metrics import ServerMetrics

    available = ModelRepository(paths, settings, ServerMetrics()).available()
    for path in available.values():
        check_package(path, settings.require_signature)
    return len(available)


def audit_to(path: Path | None) -> None:
    """Audit lines (one per load, reload, refusal, unload) go to stderr and, if given, a file."""
    import logging

    audit = logging.getLogger("bushu.audit")
    audit.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s audit %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        handlers.append(logging.FileHandler(path))
    for handler in handlers:
        handler.setFormatter(fmt)
        audit.addHandler(handler)


def serve(
    paths: list[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    on_bound: Callable[[str, str, int], None] | None = None,
    graceful_timeout: float = 30.0,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    audit_log: Path | None = None,
) -> None:
    import uvicorn

    settings = settings or ServeSettings()
    check_repository(paths, settings)
    audit_to(audit_log)
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(paths, settings),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=graceful_timeout,
        backlog=4096,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    server = uvicorn.Server(config)
    if on_bound:
        on_bound("https" if ssl_certfile else "http", bound_host, bound_port)
    server.run(sockets=[sock])
