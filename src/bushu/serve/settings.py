"""What the operator chooses when starting a server, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bushu.serve.auth import Token


@dataclass(frozen=True)
class GrpcListen:
    """Where the gRPC front listens ("host:port"), and the TLS files it serves with (the HTTP
    server's: a server given TLS never speaks plaintext gRPC)."""

    address: str
    certfile: Path | None = None
    keyfile: Path | None = None


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32
    max_queue_delay_ms: float = 5.0
    #: Requests waiting per model version before new ones get 503 + Retry-After.
    max_queue_size: int = 1024
    #: Bytes of tensors accepted and not yet answered per model version before 503 + Retry-After.
    max_queue_bytes: int = 256 * 1024 * 1024
    #: Rows one request may carry (None: `max_batch_size`); more → 413, never split.
    max_request_rows: int | None = None
    instances: int = 1
    #: Seconds a request may take, queue and compute, before it is answered 504.
    timeout_s: float = 30.0
    #: Largest request body accepted; larger ones get 413.
    max_body_bytes: int = 64 * 1024 * 1024
    #: Longest video the predict route decodes; longer ones get 413.
    max_video_seconds: float = 600.0
    #: Seconds a client has to send its whole body; slower ones get 408 and lose the connection.
    body_timeout_s: float = 30.0
    #: Texts one `/search` corpus may hold; more → 413.
    max_corpus: int = 1024
    #: Pixels an image sent to an app route may decode to; more → 413 (decompression bombs).
    max_image_pixels: int = 4096 * 4096
    #: Intra-op threads per model instance (0: the runtime's default).
    threads: int = 0
    #: Public key every package must be signed with; unsigned or tampered packages are refused.
    require_signature: Path | None = None
    #: AES-256 key for encrypted packages (never printed).
    decrypt_key: bytes | None = field(default=None, repr=False)
    #: Bearer tokens; none means no authentication.
    tokens: tuple[Token, ...] = ()
    #: Requests per second per client address when no tokens are configured (None: unlimited).
    anonymous_rate_per_s: float | None = None
    #: Explanations running at once, and queued behind them before 503 (`serve.explain_routes`).
    explain_concurrency: int = 1
    explain_waiting: int = 4
    #: Generation packages: KV-cache tokens (prompt + new, reserved per sequence) at most.
    max_tokens_in_flight: int = 32768
    #: Generation packages: sequences decoded together at most.
    max_sequences: int = 64

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue_size", "max_queue_bytes", "instances", "max_body_bytes",
                     "max_corpus", "max_image_pixels", "max_tokens_in_flight", "max_sequences"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_request_rows is not None and self.max_request_rows < 1:
            raise ValueError("max_request_rows must be at least 1")
        if self.max_queue_delay_ms < 0 or self.timeout_s <= 0 or self.threads < 0 or self.body_timeout_s <= 0:
            raise ValueError("delays and timeouts must be positive")
