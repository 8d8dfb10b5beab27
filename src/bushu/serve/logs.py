"""Where a server's own lines go: access, audit and error records of the `bushu` loggers, one
per line on stderr, as text for people or as JSON for log collectors.

The `bushu` logger gets its own handler and stops propagating, so a line is written once
whatever else the process configured on the root logger. Audit lines (loads, reloads,
refusals, unloads) are kept at INFO whatever `--log-level` says, and also go to a file if asked.

Access lines (one per request) skip the `logging` machinery once `configure` has run: building
a `LogRecord`, formatting it and writing it on the event loop cost about 15% of the server's
requests per second. The request path only appends the line's fields to a deque (`AccessLines`);
a thread of its own formats them in batches and writes each batch with one call, through the
same handler (its stream, its lock) in the same shape a record would have had. Nothing is lost
on shutdown: the server flushes it once the last request is answered (`serve.server`), and so
does `atexit`.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
#: The access line's text (the message part), for a `LogRecord` and for `AccessLines` alike.
ACCESS_TEXT = ('{client} "{method} {path}" model={model} status={status:d} duration_ms={duration_ms:.3f} '
               "request_id={request_id}")
ACCESS_FIELDS = ("method", "path", "model", "status", "duration_ms", "request_id", "client")


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


class AccessLines:
    """Access lines formatted and written in batches by a thread of their own (see the module
    docstring). `add` is all the request path pays: one `deque.append` (atomic, lock-free)."""

    def __init__(self, handler: logging.StreamHandler, fmt: str, interval: float = 0.05) -> None:
        self.handler, self.json = handler, fmt == "json"
        self.interval = interval
        self._entries: collections.deque[tuple[Any, ...]] = collections.deque()
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._stamp: tuple[int, str] = (-1, "")
        self._start()
        atexit.register(self.close)
        # A forked worker process has no writer thread and a copy of lines its parent writes
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._restart_in_child)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bushu-access-log", daemon=True)
        self._thread.start()

    def _restart_in_child(self) -> None:
        self._entries.clear()
        self._flushing = threading.Lock()  # held by the parent's writer at fork time, perhaps
        if not self._stop.is_set():
            self._start()

    def add(self, when: float, fields: tuple[Any, ...]) -> None:
        """One line: `when` (time.time()) and the values of `ACCESS_FIELDS`, in that order."""
        self._entries.append((when, fields))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def _time(self, when: float) -> str:
        """`when` as the handler's formatter writes a record's time, to the millisecond (local
        time; the second's text is kept, since a batch is mostly one or two seconds)."""
        second = int(when)
        if second != self._stamp[0]:
            pattern = "%Y-%m-%dT%H:%M:%S" if self.json else "%Y-%m-%d %H:%M:%S"
            self._stamp = (second, time.strftime(pattern, time.localtime(second)))
        millis = int((when - second) * 1000)
        return f"{self._stamp[1]}.{millis:03d}" if self.json else f"{self._stamp[1]},{millis:03d}"

    def _line(self, when: float, fields: tuple[Any, ...]) -> str:
        entry = dict(zip(ACCESS_FIELDS, fields))
        if self.json:
            return orjson.dumps({"time": self._time(when), "level": "info", "logger": "bushu.access", **entry}).decode()
        return f"{self._time(when)} INFO bushu.access {ACCESS_TEXT.format(**entry)}"

    def flush(self) -> None:
        """Write every line added so far (one write, under the handler's lock)."""
        with self._flushing:
            entries = self._entries
            batch = [entries.popleft() for _ in range(len(entries))]
            if not batch:
                return
            text = "".join(self._line(when, fields) + "\n" for when, fields in batch)
            with self.handler.lock:  # type: ignore[union-attr]  # a StreamHandler has its lock
                try:
                    self.handler.stream.write(text)
                    self.handler.stream.flush()
                except (OSError, ValueError):  # stderr closed or gone: as logging would, drop the lines
                    pass

    def close(self) -> None:
        self._stop.set()
        self.flush()


#: Set by `configure`: where access lines go, or None to send them through `logging` (as when
#: bushu runs inside another program's logging configuration).
access_lines: AccessLines | None = None


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, not {fmt!r}")
    return JsonLines() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def configure(fmt: str = "text", level: str = "info", audit_file: Path | None = None,
              stream: IO[str] | None = None) -> None:
    """Send the `bushu` loggers' records at `level` and above to `stream` (stderr) in `fmt`."""
    global access_lines
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {LEVELS}, not {level!r}")
    if access_lines is not None:
        access_lines.close()
        atexit.unregister(access_lines.close)
        access_lines = None
    root = logging.getLogger("bushu")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    if root.isEnabledFor(logging.INFO):
        access_lines = AccessLines(handler, fmt)
    audit = logging.getLogger("bushu.audit")
    audit.setLevel(logging.INFO)
    for old in list(audit.handlers):
        audit.removeHandler(old)
    if audit_file is not None:
        to_file = logging.FileHandler(audit_file)
        to_file.setFormatter(formatter(fmt))
        audit.addHandler(to_file)
