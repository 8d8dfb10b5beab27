"""What a generation package promises (`generation.json`) and what one request asks for.

`GenerationConfig` is written at pack time: the defaults of every sampling parameter, the
model's context, its end-of-sequence ids. `SamplingParams` is one request's choice, parsed
from the names a route uses (Triton's generate extension, OpenAI's completions): an unknown
name, a wrong type or a value out of range is a 400 that names the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bushu.errors import InvalidInput

CONFIG_FILE = "generation.json"


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    top_k: int = Field(default=0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, gt=0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    #: Positions the decoder has (prompt + generated, or generated alone for an encoder-decoder).
    context: int = Field(ge=2)
    #: Source tokens an encoder-decoder reads at most.
    max_source_tokens: int | None = None
    eos_token_ids: list[int] = Field(default_factory=list)
    decoder_start_token_id: int | None = None
    #: Tokens added around a prompt by the tokenizer's post-processor are kept (T5's </s>).
    add_special_tokens: bool = False


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


#: Parameter name in a request → SamplingParams field; routes add their own aliases.
PARAMETERS = {
    "max_tokens": "max_new_tokens", "max_new_tokens": "max_new_tokens", "temperature": "temperature",
    "top_k": "top_k", "top_p": "top_p", "repetition_penalty": "repetition_penalty", "stop": "stop",
    "seed": "seed", "ignore_eos": "ignore_eos",
}


def _number(name: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise InvalidInput(f"'{name}' must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not math.isfinite(value):
        raise InvalidInput(f"'{name}' must be finite")
    return value


def parse_params(given: Mapping[str, Any], defaults: GenerationConfig, *,
                 ignored: frozenset[str] = frozenset(), room: int | None = None) -> SamplingParams:
    """One request's parameters over the package's defaults; every error names its field.
    `room` (new tokens the context leaves this prompt) caps the default max tokens, never a given one."""
    unknown = sorted(k for k in given if k not in PARAMETERS and k not in ignored)
    if unknown:
        raise InvalidInput(f"unknown sampling parameter(s) {unknown}; known: {sorted(PARAMETERS)}")
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name in ignored or value is None:
            continue
        key = PARAMETERS[name]
        if key == "max_new_tokens":
            if _number(name, value, integer=True) < 1:
                raise InvalidInput(f"'{name}' must be at least 1, not {value}")
        elif key == "top_k":
            if _number(name, value, integer=True) < 0:
                raise InvalidInput(f"'{name}' must be 0 (off) or more, not {value}")
        elif key == "seed":
            _number(name, value, integer=True)
        elif key == "temperature":
            if not 0 <= _number(name, value) <= 100:
                raise InvalidInput(f"'{name}' must be between 0 and 100, not {value}")
        elif key == "top_p":
            if not 0 < _number(name, value) <= 1:
                raise InvalidInput(f"'{name}' must be in (0, 1], not {value}")
        elif key == "repetition_penalty":
            if not 0 < _number(name, value) <= 100:
                raise InvalidInput(f"'{name}' must be in (0, 100], not {value}")
        elif key == "ignore_eos":
            if not isinstance(value, bool):
                raise InvalidInput(f"'{name}' must be true or false")
        elif key == "stop":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or len(value) > 8 or not all(isinstance(s, str) and s for s in value):
                raise InvalidInput(f"'{name}' must be a non-empty string or a list of at most 8 of them")
            value = tuple(value)
        values[key] = value
    base = {k: getattr(defaults, k) for k in ("max_new_tokens", "temperature", "top_k", "top_p",
                                              "repetition_penalty", "seed")}
    if room is not None:
        base["max_new_tokens"] = max(1, min(base["max_new_tokens"], room))
    base["stop"] = tuple(defaults.stop)
    return SamplingParams(**{**base, **values})


@dataclass(frozen=True)
class EngineSettings:
    """The memory bound and the step budget of one generation engine."""

    #: Tokens (prompt + new, per sequence, reserved at admission) the KV cache holds at most.
    max_tokens_in_flight: int = 32768
    #: Sequences decoded together at most (rows of the cache).
    max_sequences: int = 64
    #: Requests waiting for admission; beyond, 503 + Retry-After.
    max_waiting: int = 256
    #: Prompt tokens prefilled per step, so running sequences wait at most one chunk.
    prefill_chunk: int = 256
    #: Prompt tokens prefilled in a step when no sequence is decoding (none to stall): a burst
    #: of requests is prefilled together and then decodes in step, not staggered chunk by chunk.
    idle_prefill: int = 8192
    #: When a request finds the engine idle, how long (ms) it waits at most for others arriving with
    #: it (it stops at the first 2 ms without one), so a burst is prefilled together, not
    #: staggered a chunk a step; 0: start at once.
    gather_ms: float = 20.0
    threads: int = 0
    precision: str = "fp32"
    device: str = "cpu"
    #: The whole cache allocated at start and the decode step padded to fixed bucket shapes ...
    static_cache: bool = False
    #: ... each captured once as a CUDA graph and replayed (the GPU path; implies static_cache).
    cuda_graphs: bool = False
    #: What runs the decode step: "pytorch", or "openvino" / "onnxruntime" (decoder-only models, CPU).
    decode: str = "pytorch"
    #: The decode step's saved graph (a weight-compressed variant's OpenVINO IR or ONNX file).
    step_file: str | None = None
    #: What an OpenVINO decode step computes in: "f32", or "bf16" (its inference precision).
    step_activations: str = "f32"

    def __post_init__(self) -> None:
        for name in ("max_tokens_in_flight", "max_sequences", "max_waiting", "prefill_chunk", "idle_prefill"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.gather_ms < 0:
            raise ValueError("gather_ms must be at least 0")
