"""Variant families: each pass builds candidate files in the output package, or says why not.

A pass never measures speed: it builds, and the search measures every candidate the same way.
A pass that needs the fidelity of what it built (selective quantisation, which backs off
until the budget holds) asks the context, which measures on calibration data only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bushu.errors import BushuError
from bushu.optimize.config import OptimizeConfig
from bushu.optimize.fidelity import Metric
from bushu.optimize.hardware import Hardware
from bushu.optimize.samples import Samples
from bushu.package.manifest import Manifest


@dataclass(frozen=True)
class Candidate:
    """A variant built into the staging package, not yet measured."""

    name: str
    family: str
    backend: str
    precision: str
    file: str  # relative to the package root
    notes: str = ""
    device: str = "cpu"
    #: Backend settings saved in the variant (e.g. PyTorch's compile and batch buckets).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """A variant not built, and why (cannot win on this hardware, no data for it, failed)."""

    name: str
    family: str
    reason: str


Outcome = Candidate | Skipped


def describe(exc: BaseException) -> str:
    """An exception as one short line: libraries put the useful part anywhere in the message."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


Built = TypeVar("Built")


def attempt(name: str, family: str, build: Callable[[], Built]) -> Built | Skipped:
    """Run one builder; a library failing on this model skips that variant, not the search."""
    try:
        return build()
    except BushuError:
        raise
    except Exception as exc:  # quantisers and converters raise many types; the message is what matters
        return Skipped(name, family, f"failed: {describe(exc)}")


@dataclass
class BuildContext:
    staging: Path
    manifest: Manifest
    base_file: str  # the fp32 ONNX model the passes start from, relative to staging
    config: OptimizeConfig
    hardware: Hardware
    calibration: Samples
    train: Samples | None
    transformer: bool
    #: The metric, as scored against the baseline's outputs on calibration data (no labels there).
    metric: Metric
    #: Error of a candidate against the baseline, measured on the calibration set.
    calibration_error: Callable[[Candidate], float]
    #: The largest error within budget (from the baseline's metric on the eval set).
    allowed_error: float
    log: Callable[[str], None]
    #: Unlabelled inputs beyond the user's files (bushu's default texts), for passes that train on the
    #: source's own outputs; none of them is in the selection or confirmation part.
    unlabelled: Samples | None = None

    def remove(self, candidate: Candidate) -> None:
        """Delete a candidate's file (and an OpenVINO IR's weights beside it)."""
        file = self.staging / candidate.file
        for path in (file, file.with_suffix(".bin")) if file.suffix == ".xml" else (file,):
            path.unlink(missing_ok=True)

    def path(self, relative: str) -> Path:
        target = self.staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
