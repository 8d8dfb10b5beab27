"""Optimisation settings: one small object with named presets, saved next to what it produced.

The budget is parsed here once, so `1%`, `0.01` and garbage mean the same thing to the CLI,
the library and the report: `1%` is relative to the baseline's metric, `0.01` is absolute.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bushu.errors import InvalidInput
from bushu.serve.settings import ServeSettings

#: `bushu serve`'s default largest batch: what the package will be served at, so what is timed.
SERVE_BATCH: int = ServeSettings.__dataclass_fields__["max_batch_size"].default

#: Fidelity metrics bushu knows. Agreement metrics compare with the source model's outputs;
#: accuracy needs labels in the eval set.
METRICS = ("accuracy", "macro_f1", "top1_agreement", "cosine", "relative_error")
#: Variant families the search can build for each target; a preset picks a subset.
CPU_FAMILIES = ("ort-fused", "ort-dynamic", "ort-static", "ort-selective", "openvino", "nncf", "nncf-selective",
                "nncf-accuracy", "pruning", "distill", "pytorch", "pytorch-compile")
CUDA_FAMILIES = ("pytorch", "pytorch-compile", "ort-cuda")
FAMILIES = tuple(dict.fromkeys(CPU_FAMILIES + CUDA_FAMILIES))
#: The default CPU search: ONNX Runtime and OpenVINO, which beat PyTorch on a CPU, without NNCF's
#: accuracy control (many validation passes); PyTorch variants are opt-in there, and so is distillation
#: (it trains students: minutes of CPU).
DEFAULT_FAMILIES = tuple(f for f in CPU_FAMILIES if f not in ("nncf-accuracy", "distill", "pytorch", "pytorch-compile"))


class Budget(BaseModel):
    """How much worse than the baseline a variant may be: `relative` of the baseline, or absolute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float = Field(ge=0)
    relative: bool

    def allowed_error(self, baseline: float, higher_is_better: bool) -> float:
        """The largest error (distance from the baseline, in metric units) still in budget."""
        if not self.relative:
            return self.value
        scale = abs(baseline) if higher_is_better else max(abs(baseline), 1.0)
        return self.value * scale

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def parse_budget(text: str) -> Budget:
    """`1%` → 1 % of the baseline's metric; `0.01` → 0.01 in the metric's own units."""
    cleaned = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+)\s*(%?)", cleaned)
    if not match:
        raise InvalidInput(f"budget {text!r}: expected a percentage like '1%' or an absolute number like '0.01'")
    value = float(match.group(1))
    relative = bool(match.group(2))
    if relative:
        value /= 100
    if value >= 1 and relative:
        raise InvalidInput(f"budget {text!r}: a relative budget must be below 100%")
    return Budget(value=value, relative=relative)


class OptimizeConfig(BaseModel):
    """Everything that decides what `bushu optimize` builds and how it measures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["cpu", "cuda"] = "cpu"
    budget: Budget = Budget(value=0.01, relative=True)
    metric: str | None = None
    families: tuple[str, ...] = DEFAULT_FAMILIES
    #: Threads per inference session, as a serving worker would get.
    threads: int = Field(default=2, ge=1)
    #: The batch size a server would form (`bushu serve`'s default max batch); latency is measured
    #: at 1 and at this, and it is stored with each variant's timings.
    serving_batch: int = Field(default=SERVE_BATCH, ge=1)
    #: Interleaved timing rounds per variant and batch size.
    rounds: int = Field(default=20, ge=3)
    calibration_samples: int = Field(default=256, ge=8)
    #: bushu's own texts mixed into a text package's calibration (0: the user's data alone).
    default_calibration: int = Field(default=192, ge=0)
    #: Structured pruning: fraction of channels removed, and fine-tuning epochs.
    prune_ratio: float = Field(default=0.5, gt=0, lt=1)
    finetune_epochs: int = Field(default=8, ge=0)
    #: Distillation: one student per scale of the teacher's widths (two where its class declares a
    #: cheaper form, which at ½ often beats a plain ⅛), each trained this many batches.
    distill_scales: tuple[float, ...] = Field(default=(0.5, 0.25), min_length=1)
    distill_steps: int = Field(default=500, ge=1)
    #: bushu's default texts a text package's students also learn from (none in the eval parts).
    distill_texts: int = Field(default=4000, ge=0)
    max_minutes: float | None = Field(default=None, gt=0)
    seed: int = 0

    def check(self) -> OptimizeConfig:
        if self.metric is not None and self.metric not in METRICS:
            raise InvalidInput(f"unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise InvalidInput(f"unknown variant families {unknown}; choose from {', '.join(FAMILIES)}")
        if not all(0 < scale < 1 for scale in self.distill_scales):
            raise InvalidInput(f"distillation scales {list(self.distill_scales)}: each must be between 0 and 1 "
                               "(the fraction of the teacher's widths a student keeps)")
        allowed = CUDA_FAMILIES if self.target == "cuda" else CPU_FAMILIES
        elsewhere = [f for f in self.families if f not in allowed]
        if elsewhere:
            raise InvalidInput(f"variant families {elsewhere} do not run on target {self.target!r}; "
                               f"for it choose from {', '.join(allowed)}")
        return self


#: Named presets: `quick` for tests and a first look, `thorough` for the full search.
PRESETS: dict[str, OptimizeConfig] = {
    "quick": OptimizeConfig(families=("ort-dynamic", "ort-static", "openvino"), rounds=5, calibration_samples=64),
    "default": OptimizeConfig(),
    "thorough": OptimizeConfig(families=CPU_FAMILIES, rounds=40, calibration_samples=512, finetune_epochs=12,
                               distill_steps=1500),
}
#: The families each preset searches with --target cuda (its other settings are the CPU preset's).
CUDA_PRESET_FAMILIES = {"quick": ("pytorch",), "default": CUDA_FAMILIES, "thorough": CUDA_FAMILIES}


def preset(name: str, **overrides: object) -> OptimizeConfig:
    """A named preset with some fields replaced; unknown names and values fail clearly."""
    if name not in PRESETS:
        raise InvalidInput(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    data = PRESETS[name].model_dump()
    if overrides.get("target") == "cuda":
        data["families"] = CUDA_PRESET_FAMILIES[name]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return OptimizeConfig.model_validate(data).check()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"optimisation settings: {problems}") from None
