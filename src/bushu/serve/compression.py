"""HTTP body compression, as Triton does it: request bodies sent with `Content-Encoding: gzip`
or `deflate` are inflated before anything reads them (so the binary extension's
`Inference-Header-Content-Length` counts the uncompressed JSON header), and infer responses
are compressed when `Accept-Encoding` asks for gzip or deflate.

An inflated body is held to the same size limit as a plain one, counted as it inflates: a
small compressed body that would expand past the limit is refused with 413 without ever
being expanded whole.
"""

from __future__ import annotations

import zlib

from bushu.errors import BushuError, InvalidInput


class UnsupportedEncoding(BushuError):
    status = 415


#: zlib's window bits: gzip framing, and (for `deflate`) zlib framing or, failing that, raw deflate
_GZIP, _ZLIB_OR_GZIP, _RAW = 16 + zlib.MAX_WBITS, 32 + zlib.MAX_WBITS, -zlib.MAX_WBITS


def _inflate(body: bytes, wbits: int, limit: int, encoding: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the request body is not valid {encoding} data ({exc})") from None
    if len(out) > limit:
        raise BushuError(f"the request body inflates past the limit of {limit} bytes", status=413)
    if not inflater.eof:
        raise InvalidInput(f"the {encoding} request body is truncated")
    return out


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """`body` as sent before its `Content-Encoding` (none, identity, gzip or deflate)."""
    if content_encoding is None:
        return body
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, _GZIP, limit, "gzip")
    if encoding == "deflate":
        try:
            return _inflate(body, _ZLIB_OR_GZIP, limit, "deflate")
        except InvalidInput:  # some clients send raw deflate without the zlib header
            return _inflate(body, _RAW, limit, "deflate")
    raise UnsupportedEncoding(f"Content-Encoding {content_encoding!r} is not supported; send gzip, deflate or identity")


def accepted(accept_encoding: str | None) -> str | None:
    """The coding to answer with: gzip or deflate when `Accept-Encoding` lists it (without q=0)."""
    if not accept_encoding:
        return None
    offered = set()
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        q = params.strip().removeprefix("q=")
        if params and q.replace(".", "", 1).isdigit() and float(q) == 0:
            continue
        offered.add(coding.strip())
    return next((c for c in ("gzip", "deflate") if c in offered), None)


def compress(body: bytes, coding: str) -> bytes:
    """Level 1: responses are compressed on the event loop, and most of the gain is in the first level."""
    if coding == "gzip":
        compressor = zlib.compressobj(1, zlib.DEFLATED, _GZIP)
    else:
        compressor = zlib.compressobj(1)
    return compressor.compress(body) + compressor.flush()


def encode_response(body: bytes, accept_encoding: str | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body compressed as `Accept-Encoding` asks (or as it is), and its headers."""
    coding = accepted(accept_encoding)
    if coding is None:
        return body, []
    return compress(body, coding), [(b"content-encoding", coding.encode()), (b"vary", b"accept-encoding")]
