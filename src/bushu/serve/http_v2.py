"""The V2 infer exchange on HTTP bytes, shared by the raw-ASGI fast path and the Starlette
route: a body in, decoded by the codec, run by the dataplane, encoded back to a body.

It sits between the wire and the dataplane so that the dataplane only ever sees decoded
requests (a gRPC front decodes its own messages and calls the same `DataPlane.infer`).
"""

from __future__ import annotations

from bushu.errors import BushuError, Overloaded
from bushu.serve.asgi import BodyTimeout
from bushu.serve.codec import decode_request, encode_response
from bushu.serve.dataplane import DataPlane


def error_headers(exc: BushuError) -> list[tuple[bytes, bytes]]:
    """Overload says when to come back (503 + Retry-After); a body timeout closes the connection."""
    if isinstance(exc, Overloaded):
        return [(b"retry-after", str(int(max(1, exc.retry_after))).encode())]
    if isinstance(exc, BodyTimeout):
        return [(b"connection", b"close")]
    return []


async def infer_v2(plane: DataPlane, name: str, version: str | None, body: bytes,
                   header_length: str | None) -> tuple[bytes, int | None]:
    """One V2 infer body in, the response body out (and its JSON header's length when binary
    tensors follow)."""
    model = plane.lookup(name, version)
    decoded = plane.decode(model, decode_request, body, header_length)
    outputs = await plane.infer(model, decoded)
    return encode_response(model.name, model.version, decoded, outputs)
