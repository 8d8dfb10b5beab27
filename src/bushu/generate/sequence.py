"""One request's life in the engine: its tokens, its place in the cache, how it ended."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bushu.generate.config import SamplingParams

_ids = itertools.count()


@dataclass
class Sequence:
    prompt: list[int]
    params: SamplingParams
    #: Called on the engine thread with each `Event`; the server hands it to the event loop.
    sink: Callable[[Any], None] = lambda event: None
    id: int = field(default_factory=lambda: next(_ids))
    output: list[int] = field(default_factory=list)
    #: Prompt tokens already run through the model.
    prefilled: int = 0
    #: Decoder positions whose keys and values are in the cache.
    cache_len: int = 0
    slot: int = -1
    #: Cache positions held for it from admission to the end (prompt and every new token).
    reserved: int = 0
    #: Set from any thread (a client went away); the scheduler drops it at the next step.
    cancelled: bool = False
    finish_reason: str | None = None
    generator: Any = None
    detokenizer: Any = None
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class Event:
    """What a client hears after a step: a new token and the text it completed (maybe none yet),
    and, on the last one, why it ended."""

    token: int | None
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class GenerationObserver:
    """Hooks the server's metrics fill in; the engine knows nothing of Prometheus."""

    first_token: Callable[[float], None] = lambda seconds: None
    inter_token: Callable[[float], None] = lambda seconds: None
    tokens: Callable[[int], None] = lambda count: None
    load: Callable[[int, int], None] = lambda running, waiting: None
