"""`bushu compare`: several candidate packages, measured on the same data and hardware.

Model selection is the same measurement as optimisation, across packages instead of variants:
each package's default variant runs the same eval file (through its own pre-processing) and
is timed interleaved with the others. The metric is accuracy when the eval set has labels,
otherwise agreement with the first package. The pick is the fastest within the budget of the
best metric (goal `latency`), or the best metric within a latency limit (goal `accuracy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bushu.errors import InvalidInput
from bushu.optimize.config import OptimizeConfig
from bushu.optimize.fidelity import Metric, choose_metric
from bushu.optimize.measure import Workload, time_interleaved
from bushu.optimize.samples import load_samples
from bushu.optimize.search import Row, file_size, outputs_on
from bushu.package.store import verify_package
from bushu.runtime.loader import backend_for

Goal = Literal["latency", "accuracy"]


@dataclass
class Comparison:
    rows: list[Row]
    metric: Metric
    choice: str | None
    why: str


def compare(
    packages: Sequence[str | Path], eval_file: str | Path, config: OptimizeConfig, *,
    goal: str = "latency", max_latency_ms: float | None = None,
) -> Comparison:
    """Measure each package's default variant alike; pick the one that best meets the goal."""
    if not packages:
        raise InvalidInput("compare needs at least one package")
    if goal not in ("latency", "accuracy"):
        raise InvalidInput(f"unknown goal {goal!r}; choose latency or accuracy")
    roots = [Path(p) for p in packages]
    manifests = [verify_package(p) for p in roots]
    names = [f"{m.name}:{p.name}" for m, p in zip(manifests, roots)]
    if len(set(names)) != len(names):
        names = [str(p) for p in roots]
    sets = [load_samples(eval_file, m, p) for m, p in zip(manifests, roots)]
    labels = sets[0].labels
    metric = choose_metric(manifests[0], config.metric, labels is not None)
    rows: list[Row] = []
    workloads: dict[str, Workload] = {}
    reference = None
    for name, manifest, root, samples in zip(names, manifests, roots, sets):
        variant = manifest.variants[manifest.default_variant]
        row = Row(name, "package", variant.backend, variant.precision, variant.file, file_size(root, variant.file),
                  f"{root}: default variant {manifest.default_variant}")
        rows.append(row)
        model = backend_for(variant.backend, config.threads).load(root, manifest, manifest.default_variant, "cpu")
        workloads[name] = Workload(model.infer, samples.batch(1), samples.batch(config.serving_batch))
        if metric.output not in [s.name for s in manifest.outputs]:
            row.reason = f"has no output {metric.output!r}"
            continue
        got = outputs_on(model, samples, metric.output, config.serving_batch)
        reference = got if reference is None else reference
        if got.shape != reference.shape:
            row.reason = f"output {metric.output!r} is {list(got.shape)}, the first package's {list(reference.shape)}"
            continue
        row.metric_value = metric.score(got, reference, labels)
    timings = time_interleaved(workloads, config.rounds)
    for row in rows:
        row.timing = timings[row.name]
    scored = [r for r in rows if r.metric_value is not None]
    if not scored:
        return Comparison(rows, metric, None, "no package could be scored on this eval set")
    values = [r.metric_value for r in scored]
    best = max(values) if metric.higher_is_better else min(values)  # type: ignore[type-var]
    allowed = config.budget.allowed_error(best, metric.higher_is_better)  # type: ignore[arg-type]
    for r in scored:
        r.error = metric.error(r.metric_value, best)  # type: ignore[arg-type]
    if goal == "latency":
        fits = [r for r in scored if r.error is not None and r.error <= allowed]
        pick = max(fits, key=lambda r: r.timing.throughput)  # type: ignore[union-attr]
        why = f"the fastest at batch {config.serving_batch} within {config.budget} of the best {metric.name}"
    else:
        fits = [r for r in scored if max_latency_ms is None or r.timing.p95_ms_b1 <= max_latency_ms]  # type: ignore[union-attr]
        if not fits:
            return Comparison(rows, metric, None, f"no package has a p95 latency ≤ {max_latency_ms:g} ms at batch 1")
        pick = min(fits, key=lambda r: (r.error, -r.timing.throughput))  # type: ignore[union-attr,operator]
        limit = f" with p95 ≤ {max_latency_ms:g} ms at batch 1" if max_latency_ms is not None else ""
        why = f"the best {metric.name}{limit}"
    for r in rows:
        r.kept = r is pick
        r.reason = r.reason or ("meets the goal best" if r is pick else "")
    return Comparison(rows, metric, pick.name, why)
