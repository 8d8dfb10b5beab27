"""One access-log line per HTTP request, and a request id on every answer.

Raw ASGI, outermost, so it sees what the client sees: the infer fast path, access control's
refusals and Starlette's routes alike. The id is the client's `X-Request-ID` when it sent a
sane one (visible ASCII, at most 128 characters), else a fresh one; either way it is returned
as a response header, so a client's report and the server's line can be matched. A request
that got no answer (the client left) is logged with status 0.

This runs on every request, so it does little: a fresh id is 128 random bits in hex (as
`uuid4().hex` looks, at a fifth of its cost), and the line is handed to `logs.AccessLines`,
which formats and writes it off the event loop; without `logs.configure` (bushu inside another
program) it is an ordinary `logging` record.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any

from bushu.serve import logs
from bushu.serve.asgi import Receive, Send, header

log = logging.getLogger("bushu.access")
_SANE_ID = re.compile(r"[\x21-\x7e]{1,128}")
_MODEL = re.compile(r"/v[12]/(?:repository/)?models/([^/]+)")
_random = random.Random()  # seeded from os.urandom; ids need to be unique, not secret


def request_id(headers: Any) -> str:
    """The client's X-Request-ID if it is safe to echo and log, else a new one."""
    given = header(headers, b"x-request-id")
    return given if given is not None and _SANE_ID.fullmatch(given) else f"{_random.getrandbits(128):032x}"


class AccessLog:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        rid = request_id(scope["headers"])
        status = 0

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = status or 500
            raise
        finally:
            if log.isEnabledFor(logging.INFO):
                path = scope["path"]
                match = _MODEL.match(path)
                client = scope.get("client")
                values = (scope["method"], path, match[1] if match else "-", status,
                          round((time.perf_counter() - started) * 1000, 3), rid, client[0] if client else "-")
                if logs.access_lines is not None:
                    logs.access_lines.add(time.time(), values)
                else:
                    fields = dict(zip(logs.ACCESS_FIELDS, values))
                    log.info(logs.ACCESS_TEXT.format(**fields), extra={"fields": fields})
