"""Load generation against a V2 server (or a package served for the occasion) and its reports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bushu.bench.loadgen import LoadResult, run_load
from bushu.bench.target import Target, check_url, v2_target

__all__ = ["LoadResult", "Target", "run_load", "served", "v2_target"]


@contextmanager
def served(url_or_package: str, serve_args: list[str] | None = None) -> Iterator[str]:
    """The URL to bench: `url_or_package` itself, or a `bushu serve` of that package (stopped after)."""
    path = Path(url_or_package)
    if "://" not in url_or_package and path.is_dir():
        from bushu.bench.process import bushu_serve

        with bushu_serve([path], *(serve_args or [])) as server:
            assert server.url is not None
            yield server.url
        return
    if "://" not in url_or_package:
        from bushu.errors import InvalidInput

        raise InvalidInput(f"{url_or_package!r} is neither a server URL (http://HOST:PORT) nor a package directory")
    yield check_url(url_or_package)
