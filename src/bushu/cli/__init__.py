"""The `bushu` command: one thin function per verb, each calling the library, grouped by area.

Heavy imports (torch, onnxruntime) happen inside the verbs so `bushu --help` is instant.
Every `BushuError` becomes a one-line message on stderr and exit status 1 (`common.user_errors`).
"""

# Importing an area registers its verbs; `bushu --help` lists them in this order.
from bushu.cli import package, optimize, serve, generate, apps, explain  # noqa: F401, I001
from bushu.cli.common import app

__all__ = ["app"]
