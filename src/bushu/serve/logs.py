"""Where a server's own lines go: access, audit and error records of the `bushu` loggers, one
per line on stderr, as text for people or as JSON for log collectors.

The `bushu` logger gets its own handler and stops propagating, so a line is written once
whatever else the process configured on the root logger. Audit lines (loads, reloads,
refusals, unloads) are kept at INFO whatever `--log-level` says, and also go to a file if asked.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO

import orjson

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the access fields when given."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(), "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, not {fmt!r}")
    return JsonLines() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def configure(fmt: str = "text", level: str = "info", audit_file: Path | None = None,
              stream: IO[str] | None = None) -> None:
    """Send the `bushu` loggers' records at `level` and above to `stream` (stderr) in `fmt`."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {LEVELS}, not {level!r}")
    root = logging.getLogger("bushu")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    audit = logging.getLogger("bushu.audit")
    audit.setLevel(logging.INFO)
    for old in list(audit.handlers):
        audit.removeHandler(old)
    if audit_file is not None:
        to_file = logging.FileHandler(audit_file)
        to_file.setFormatter(formatter(fmt))
        audit.addHandler(to_file)
