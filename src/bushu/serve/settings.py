"""What the operator chooses when starting a server, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bushu.serve.auth import Token


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32
    max_queue_delay_ms: float = 5.0
    #: Requests waiting per model version before new ones get 503 + Retry-After.
    max_queue_size: int = 1024
    instances: int = 1
    #: Seconds a request may take, queue and compute, before it is answered 504.
    timeout_s: float = 30.0
    #: Largest request body accepted; larger ones get 413.
    max_body_bytes: int = 64 * 1024 * 1024
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
    #: Generation packages: KV-cache tokens (prompt + new, reserved per sequence) at most.
    max_tokens_in_flight: int = 32768
    #: Generation packages: sequences decoded together at most.
    max_sequences: int = 64

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue_size", "instances", "max_body_bytes", "max_tokens_in_flight",
                     "max_sequences"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_queue_delay_ms < 0 or self.timeout_s <= 0 or self.threads < 0:
            raise ValueError("delays and timeouts must be positive")
