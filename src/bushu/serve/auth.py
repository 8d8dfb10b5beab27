"""Bearer tokens with scopes, and per-token rate limits, as one pure ASGI middleware.

Scopes: `infer` for inference and metadata, `admin` for the repository API and metrics. Health
probes stay open. Tokens are compared by SHA-256 digest in constant time, and a token file may
hold only digests, so reading it does not reveal the secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bushu.errors import BushuError, InvalidInput, NotFound
from bushu.serve.asgi import send_error

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
SCOPES = ("infer", "admin")


@dataclass(frozen=True)
class Token:
    name: str
    digest: bytes
    scopes: frozenset[str]
    #: Requests per second this token may make (None: unlimited), and the burst above it.
    rate_per_s: float | None = None
    burst: int = 10


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def load_tokens(path: Path) -> list[Token]:
    """Read a token file: `{"tokens": [{"name", "token" | "sha256", "scopes", "rate_per_s"?, "burst"?}]}`."""
    if not path.is_file():
        raise NotFound(f"token file {path} does not exist")
    try:
        doc = orjson.loads(path.read_bytes())
        entries = doc["tokens"]
        tokens = []
        for entry in entries:
            scopes = frozenset(entry["scopes"])
            unknown = scopes - set(SCOPES)
            if unknown:
                raise InvalidInput(f"token {entry['name']!r}: unknown scope(s) {sorted(unknown)}; use {SCOPES}")
            secret = bytes.fromhex(entry["sha256"]) if "sha256" in entry else digest(entry["token"])
            rate = entry.get("rate_per_s")
            tokens.append(Token(str(entry["name"]), secret, scopes, float(rate) if rate else None,
                                int(entry.get("burst", 10))))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{path}: not a valid token file ({type(exc).__name__}: {exc})") from None
    names = [t.name for t in tokens]
    if len(set(names)) != len(names) or len({t.digest for t in tokens}) != len(tokens):
        raise InvalidInput(f"{path}: token names and secrets must be unique")
    return tokens


def required_scope(path: str) -> str | None:
    if path.startswith(("/v2/health/", "/playground/")) or path == "/":  # the page is static; its data needs a token
        return None
    if path.startswith("/v2/repository/") or path == "/metrics":
        return "admin"
    return "infer"


class TokenBucket:
    """`rate` requests per second on average, up to `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, float(max(1, burst))
        self.level, self.updated = self.capacity, time.monotonic()

    def full(self, now: float) -> bool:
        """Refilled to its burst: forgetting it changes nothing for its client."""
        return self.level + (now - self.updated) * self.rate >= self.capacity

    def take(self) -> float:
        """0 if a request may pass now, else the seconds until one may."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class AccessDenied(BushuError):
    """A request refused by the gate: 401 (no or bad token), 403 (scope) or 429 (rate), with the
    headers HTTP sends with it (a gRPC front sends them as trailing metadata)."""

    def __init__(self, message: str, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(message, status=status)
        self.headers = headers


class Gate:
    """Authenticate, authorise by scope, rate-limit: one policy for every front (the HTTP
    middleware below, the gRPC front), so a client meets the same tokens and the same buckets
    whichever protocol it speaks.

    Buckets are kept least recently used first, and memory stays bounded: a bucket that has
    refilled is forgotten (a fresh one is the same), and past `max_buckets` the least recently
    used is dropped even if not full (its client gets a fresh burst: the bound wins).
    """

    def __init__(self, tokens: list[Token], anonymous_rate: float | None = None,
                 anonymous_burst: int = 10, max_buckets: int = 100_000) -> None:
        self.tokens = tokens
        self.anonymous_rate = anonymous_rate
        self.anonymous_burst = anonymous_burst
        self.max_buckets = max_buckets
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _find(self, header: bytes | None) -> Token | None:
        if not header or not header[:7].lower() == b"bearer ":
            return None
        presented = hashlib.sha256(header[7:].strip()).digest()
        found = None
        for token in self.tokens:  # no early exit: the time taken does not tell which token matched
            if hmac.compare_digest(token.digest, presented):
                found = token
        return found

    def _limit(self, key: str, rate: float | None, burst: int) -> float:
        if rate is None:
            return 0.0
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(rate, burst)
        else:
            self.buckets.move_to_end(key)
        wait = bucket.take()
        self._evict(bucket.updated)
        return wait

    def _evict(self, now: float) -> None:
        """Forget refilled buckets from the least recently used end (at most a few per request:
        amortised O(1)), then any beyond `max_buckets`."""
        for _ in range(2):
            key, oldest = next(iter(self.buckets.items()))
            if not oldest.full(now):
                break
            del self.buckets[key]
        while len(self.buckets) > self.max_buckets:
            self.buckets.popitem(last=False)

    def admit(self, needed: str | None, authorization: bytes | None, client: str) -> str:
        """The name the request acts under (for the audit log), or `AccessDenied`."""
        if needed is None:
            return "anonymous"
        if self.tokens:
            token = self._find(authorization)
            if token is None:
                message = "a bearer token is required" if authorization is None else "the bearer token is not valid"
                raise AccessDenied(message, 401, [(b"www-authenticate", b'Bearer realm="bushu"')])
            if needed not in token.scopes:
                raise AccessDenied(f"token {token.name!r} lacks the {needed!r} scope", 403, [])
            name = token.name
            wait = self._limit(name, token.rate_per_s, token.burst)
        else:
            name = f"anonymous@{client}"
            wait = self._limit(name, self.anonymous_rate, self.anonymous_burst)
        if wait > 0:
            raise AccessDenied(f"rate limit exceeded for {name}", 429, [(b"retry-after", str(math.ceil(wait)).encode())])
        return name


class AccessControl:
    """ASGI middleware over a `Gate`: records the token's name in `scope["state"]["token"]` for
    the audit log. Give it the app's shared `gate`, or the gate's arguments to make its own."""

    def __init__(self, app: ASGIApp, tokens: list[Token] | None = None, anonymous_rate: float | None = None,
                 anonymous_burst: int = 10, max_buckets: int = 100_000, gate: Gate | None = None) -> None:
        self.app = app
        self.gate = gate or Gate(tokens or [], anonymous_rate, anonymous_burst, max_buckets)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        needed = required_scope(scope["path"])
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None) if self.gate.tokens else None
        try:
            name = self.gate.admit(needed, header, (scope.get("client") or ("unknown", 0))[0])
        except AccessDenied as exc:
            return await send_error(send, exc.status, str(exc), exc.headers)
        scope.setdefault("state", {})["token"] = name
        await self.app(scope, receive, send)
