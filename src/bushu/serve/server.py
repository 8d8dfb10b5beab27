"""Running the app on uvicorn (uvloop + httptools): bound socket first, so port 0 works and the
real address is known; SIGTERM drains accepted requests before exit (uvicorn's graceful
shutdown, then the app's lifespan closes every batcher after its queue is empty)."""

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


def serve(
    paths: list[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    on_bound: Callable[[str, int], None] | None = None,
    graceful_timeout: float = 30.0,
) -> None:
    import uvicorn

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
    )
    server = uvicorn.Server(config)
    if on_bound:
        on_bound(bound_host, bound_port)
    server.run(sockets=[sock])
