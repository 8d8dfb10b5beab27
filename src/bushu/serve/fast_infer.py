"""The V2 infer route in raw ASGI, in front of Starlette: the one route that carries the load.

Measured under load on 2 cores, Starlette's routing, `Request` and `Response` objects cost
about 240 µs of event-loop time per request, a third of what bushu spends on one; the event
loop is what saturates first. This route does the same work as the Starlette one — read the
body within the size limit, decode, run through the dataplane, encode — on the ASGI messages
directly. Every other path and method falls through to Starlette, unchanged; access control
wraps both, so it still runs first.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bushu.errors import BushuError
from bushu.serve.asgi import ClientGone, Receive, Send, header, read_body, send_bytes, send_error
from bushu.serve.batcher import Overloaded
from bushu.serve.codec import decode_request, encode_response
from bushu.serve.dataplane import DataPlane

log = logging.getLogger("bushu.serve")
#: The two infer paths, with Starlette's `{param}` rule: one path segment, anything but "/".
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
HEADER_LENGTH = b"inference-header-content-length"


def error_headers(exc: BushuError) -> list[tuple[bytes, bytes]]:
    """Overload says when to come back (503 + Retry-After)."""
    return [(b"retry-after", str(int(max(1, exc.retry_after))).encode())] if isinstance(exc, Overloaded) else []


class FastInfer:
    def __init__(self, app: Any, plane: DataPlane, max_body_bytes: int) -> None:
        self.app, self.plane, self.max_body_bytes = app, plane, max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        match = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            return await self.app(scope, receive, send)
        try:
            await self._infer(match[1], match[2], scope, receive, send)
        except ClientGone:
            return
        except BushuError as exc:
            await send_error(send, exc.status, str(exc), error_headers(exc))
        except Exception as exc:  # a bug, not the client's doing: logged, and answered 500
            log.exception("unexpected error on %s", scope["path"])
            await send_error(send, 500, f"internal error: {type(exc).__name__}")

    async def _infer(self, name: str, version: str | None, scope: dict[str, Any], receive: Receive,
                     send: Send) -> None:
        headers = scope["headers"]
        body = await read_body(receive, headers, self.max_body_bytes)
        payload, header_length = await infer_v2(self.plane, name, version, body, header(headers, HEADER_LENGTH))
        if header_length is None:
            return await send_bytes(send, 200, payload, b"application/json")
        await send_bytes(send, 200, payload, b"application/octet-stream",
                         [(HEADER_LENGTH, str(header_length).encode())])


async def infer_v2(plane: DataPlane, name: str, version: str | None, body: bytes,
                   header_length: str | None) -> tuple[bytes, int | None]:
    """One V2 infer body in, the response body out (and its JSON header's length when binary
    tensors follow): what both infer routes, this one and Starlette's, do between the bytes."""
    model = plane.lookup(name, version)
    try:
        decoded = decode_request(body, header_length)
    except BushuError as exc:  # a body that does not decode still counts as this model's failed request
        plane.metrics.outcome(model.name, model.version, exc.status)
        raise
    outputs = await plane.infer(model, decoded)
    return encode_response(model.name, model.version, decoded, outputs)
