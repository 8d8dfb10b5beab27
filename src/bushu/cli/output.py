"""What reaches the user's screen: consoles that fit a terminal or a pipe, and other libraries'
logs and progress bars kept off it unless `--verbose`.

A rich `Console` writing to a pipe assumes 80 columns and cuts table cells ("recommendati…");
piped output is read by programs and by people with wide windows, so there it takes the
width the content needs (soft wraps only). Other libraries talk on the root logger (ONNX
Runtime's quantiser warns on every call) or draw their own bars (transformers' weight
loading); the user asked bushu, so by default only bushu's own records and other libraries'
errors are shown.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

from rich.console import Console

#: Width of a console that writes to a pipe with $COLUMNS unset: wide enough for any table bushu prints.
PIPE_WIDTH = 400


def make_console(*, stderr: bool = False) -> Console:
    """A console as wide as the terminal, or, on a pipe without $COLUMNS, as wide as its content."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    if piped and not os.environ.get("COLUMNS"):
        return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)
    return Console(stderr=stderr)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to whatever `sys.stderr` is when a record arrives (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


class _OwnRecords(logging.Filter):
    """bushu's records at any level; another library's only when it is an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "bushu" or record.name.startswith("bushu.") or record.levelno >= logging.ERROR


def configure(*, verbose: bool = False) -> None:
    """Route log records to stderr once per process: every library's with `verbose`, else bushu's
    (and other libraries' errors); without `verbose`, transformers' progress bars stay hidden."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _CurrentStderr)]:
        root.removeHandler(handler)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_OwnRecords())
    root.addHandler(handler)  # a root handler also stops `logging.warning()` from adding its own
    bars = "0" if verbose else "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = bars  # read when transformers is first imported
    os.environ["TRANSFORMERS_VERBOSITY"] = "info" if verbose else "error"
    if "transformers" in sys.modules:  # already imported (in-process callers): switch it directly
        from transformers.utils import logging as hf_logging

        hf_logging.enable_progress_bar() if verbose else hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_info() if verbose else hf_logging.set_verbosity_error()
