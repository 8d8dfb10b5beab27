"""Raw ASGI replies and body reading, for the code that runs before or instead of Starlette:
the access-control middleware and the infer fast path (`fast_infer.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from bushu.errors import BushuError
from bushu.serve.compression import inflate

Send = Callable[[Any], Awaitable[None]]
Receive = Callable[[], Awaitable[Any]]
Headers = Iterable[tuple[bytes, bytes]]


class PayloadTooLarge(BushuError):
    status = 413


class BodyTimeout(BushuError):
    """The client did not send its whole body in time: answered 408, and its connection closed
    (a slow client holds no connection open for longer than the body timeout)."""

    status = 408


class ClientGone(Exception):
    """The client disconnected before its request body was complete: there is no one to answer."""


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes, headers: Headers = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, headers: Headers = ()) -> None:
    """`{"error": message}` with `status`: the one error shape every route answers with."""
    await send_bytes(send, status, orjson.dumps({"error": message}), b"application/json", headers)


def header(headers: Headers, name: bytes) -> str | None:
    """The value of a request header (`name` in lower case, as ASGI gives names), or None."""
    for key, value in headers:  # a plain loop: this runs several times on every request
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, headers: Headers, limit: int, timeout: float | None = None) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to pass `limit` bytes,
    and with 408 when it has not all arrived within `timeout` seconds; a gzip or deflate body
    comes inflated (`serve.compression`), within the same limit."""
    declared = header(headers, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            body = await _receive_all(receive, limit)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from None
    return inflate(body, header(headers, b"content-encoding"), limit)


async def _receive_all(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
