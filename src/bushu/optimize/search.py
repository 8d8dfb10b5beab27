"""`bushu optimize`: build candidate variants, measure them all alike, keep the fastest in budget.

The source package is read, never written: the result is a new package holding the source's
files, the kept variants, the settings used (`optimize.json`) and the report. The choice is
the variant with the highest throughput at the serving batch whose error is within budget on
the eval set — and never one slower than the fp32 baseline; when none beats the baseline, the
baseline stays the default and the report says why.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import BushuError, InvalidInput
from bushu.optimize import hardware as hw
from bushu.optimize.config import OptimizeConfig
from bushu.optimize.fidelity import Metric, choose_metric
from bushu.optimize.measure import Timing, Workload, time_interleaved
from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, describe
from bushu.optimize.samples import Samples, ensure_disjoint, load_samples, split_for_calibration
from bushu.package.manifest import Manifest, Variant
from bushu.package.store import hash_files, staged_package, verify_package, write_manifest
from bushu.runtime.base import Model
from bushu.runtime.loader import backend_for

CONFIG_FILE = "optimize.json"


@dataclass
class Row:
    """One variant's measurements and verdict: a row of the report."""

    name: str
    family: str
    backend: str
    precision: str
    file: str
    size_bytes: int
    notes: str
    metric_value: float | None = None
    error: float | None = None
    timing: Timing | None = None
    kept: bool = False
    reason: str = ""
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    manifest: Manifest
    metric: Metric
    baseline: str
    choice: str
    allowed_error: float
    rows: list[Row]
    skipped: list[Skipped]
    hardware: hw.Hardware
    config: OptimizeConfig
    calibration_source: str
    eval_source: str
    eval_samples: int
    seconds: float
    why: str
    notes: list[str] = field(default_factory=list)


def _is_transformer(manifest: Manifest) -> bool:
    return any(s.kind in ("tokenize", "hf_tokenize") for s in manifest.preprocessing) or {"input_ids", "attention_mask"} <= {
        s.name for s in manifest.inputs}


def outputs_on(model: Model, samples: Samples, output: str, batch: int) -> np.ndarray:
    return np.concatenate([model.infer(b, [output])[output] for b in samples.batches(batch)])


def file_size(staging: Path, file: str) -> int:
    path = staging / file
    size = path.stat().st_size
    return size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


class _Search:
    """What loading and scoring candidates needs: the staging directory, settings, calibration data."""

    def __init__(self, staging: Path, manifest: Manifest, config: OptimizeConfig, metric: Metric,
                 calibration: Samples) -> None:
        self.staging, self.manifest, self.config, self.metric, self.calibration = (
            staging, manifest, config, metric, calibration)
        source = manifest.variants[manifest.default_variant]
        self.baseline = Candidate(manifest.default_variant, "baseline", source.backend, source.precision, source.file,
                                  "the source package's default variant")
        self._cal_reference: np.ndarray | None = None
        #: Calibration data has no labels: accuracy is judged there by top-1 agreement.
        self.proxy = Metric("top1_agreement", metric.output, True) if metric.name in ("accuracy", "macro_f1") else metric

    def load(self, candidate: Candidate) -> Model:
        """Load a candidate from the staging directory (not hashed yet: it is still being built)."""
        provisional = self.manifest.model_copy(update={
            "variants": {candidate.name: Variant(file=candidate.file, backend=candidate.backend,  # type: ignore[arg-type]
                                                 device=candidate.device, precision=candidate.precision,
                                                 options=candidate.options)},
            "default_variant": candidate.name,
        })
        return backend_for(candidate.backend, self.config.threads).load(self.staging, provisional, candidate.name,
                                                                        candidate.device)

    def calibration_error(self, candidate: Candidate) -> float:
        """Error on the calibration set, against the baseline's outputs there (labels unused)."""
        output = self.metric.output
        if self._cal_reference is None:
            self._cal_reference = outputs_on(self.load(self.baseline), self.calibration, output, self.config.serving_batch)
        got = outputs_on(self.load(candidate), self.calibration, output, self.config.serving_batch)
        proxy = self.proxy
        perfect = proxy.score(self._cal_reference, self._cal_reference, None)
        return proxy.error(proxy.score(got, self._cal_reference, None), perfect)


def _build(ctx: BuildContext, deadline: float | None) -> list[Outcome]:
    from bushu.optimize.passes import distill, openvino, ort, pruning, pytorch, selective

    outcomes: list[Outcome] = []
    # (stage, the families it builds, how): a stage none of whose families is asked for is not run
    stages: list[tuple[str, set[str], Callable[[], list[Outcome]]]] = [
        ("onnxruntime", {"ort-fused", "ort-dynamic", "ort-static"}, lambda: ort.build(ctx)),
        ("openvino", {"openvino", "nncf", "nncf-accuracy"}, lambda: openvino.build(ctx)),
        ("selective", {"ort-selective", "nncf-selective"}, lambda: selective.build(ctx, outcomes)),
        ("pruning", {"pruning"}, lambda: pruning.build(ctx)),
        ("distill", {distill.FAMILY}, lambda: distill.build(ctx)),
        ("pytorch", set(pytorch.FAMILIES), lambda: pytorch.build(ctx)),
        ("onnxruntime-gpu", {"ort-cuda"}, lambda: ort.gpu(ctx)),
    ]
    if ctx.config.target == "cuda":  # GPU variants first: they are what a cuda search is for
        stages.sort(key=lambda stage: stage[0] not in ("pytorch", "onnxruntime-gpu"))
    for stage, families, run in stages:
        if not families & set(ctx.config.families):
            continue
        if deadline is not None and time.monotonic() > deadline:
            outcomes.append(Skipped(stage, stage, "the --max-minutes time limit was reached before this stage"))
            continue
        ctx.log(f"building {stage} variants")
        try:
            outcomes += run()
        except BushuError:
            raise
        except Exception as exc:  # a library failing on this model must not sink the whole search
            outcomes.append(Skipped(stage, stage, f"failed: {describe(exc)}"))
    return outcomes


def decide(rows: list[Row], baseline: Row, allowed: float) -> tuple[str, str]:
    """Mark kept/rejected rows; return the chosen variant and why."""
    if baseline.timing is None:  # e.g. PyTorch fp32 failing on the GPU: nothing to measure speed against
        raise BushuError(f"the fp32 baseline {baseline.name} could not be measured: {baseline.reason or 'no timing'}")
    base_speed = baseline.timing.throughput
    for row in rows:
        if row is baseline:
            row.kept, row.reason = True, "the fp32 baseline"
        elif row.reason:  # failed to load or run
            continue
        elif row.error is None or row.error > allowed:
            row.reason = f"over budget: error {row.error:.4g} > allowed {allowed:.4g}"
        elif row.timing is None or row.timing.throughput <= base_speed:
            speed = row.timing.throughput if row.timing else 0.0
            row.reason = f"slower than the fp32 baseline ({speed:.1f}/s vs {base_speed:.1f}/s)"
        else:
            row.kept, row.reason = True, "within budget and faster than the baseline"
    kept = [r for r in rows if r.kept and r.timing is not None]
    best = max(kept, key=lambda r: r.timing.throughput)  # type: ignore[union-attr]
    if best is baseline:
        within = [r for r in rows if r.error is not None and r.error <= allowed and r is not baseline]
        why = ("no variant beat the fp32 baseline's throughput within the budget; keeping the baseline"
               if within else "no variant stayed within the budget; keeping the baseline")
        return baseline.name, why
    best.reason = "chosen: the fastest within budget"
    return best.name, (f"{best.name} is the fastest within budget: {best.timing.throughput / base_speed:.2f}× "  # type: ignore[union-attr]
                       f"the baseline's throughput at batch {best.timing.batch}, error {best.error:.4g} ≤ {allowed:.4g}")


def optimize(
    source: str | Path,
    out: str | Path,
    config: OptimizeConfig,
    *,
    eval_file: str | Path,
    calibration_file: str | Path | None = None,
    train_file: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Result:
    """Search variants of the package at `source`; write the result package to `out`."""
    from bushu.optimize.report import write_report

    started = time.monotonic()
    config.check()
    deadline = started + config.max_minutes * 60 if config.max_minutes else None
    root = Path(source)
    manifest = verify_package(root)
    if Path(out).resolve() == root.resolve():
        raise InvalidInput("the output must be a new directory: optimize never changes its source package")
    machine = hw.probe()
    if config.target == "cuda" and machine.cuda is None:
        raise InvalidInput("--target cuda: no CUDA device is visible on this machine; use --target cpu")
    evaluation = load_samples(eval_file, manifest, root)
    notes: list[str] = []
    if calibration_file is not None:
        calibration = load_samples(calibration_file, manifest, root)
    else:
        calibration, evaluation = split_for_calibration(evaluation, config.calibration_samples, config.seed)
        notes.append(f"no --calibration file: {len(calibration)} eval samples were held out for calibration "
                     f"and the remaining {len(evaluation)} used for evaluation")
    ensure_disjoint(calibration, evaluation)
    train = load_samples(train_file, manifest, root) if train_file is not None else None
    if train is not None:
        ensure_disjoint(train, evaluation)
    if len(calibration) > config.calibration_samples:
        calibration = calibration.take(np.arange(config.calibration_samples))
    metric = choose_metric(manifest, config.metric, evaluation.labels is not None)

    with staged_package(out, force=force) as staging:
        for rel in manifest.files:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, staging / rel)
        search = _Search(staging, manifest, config, metric, calibration)
        base = search.baseline
        reference = outputs_on(search.load(base), evaluation, metric.output, config.serving_batch)
        base_value = metric.score(reference, reference, evaluation.labels)
        allowed = config.budget.allowed_error(base_value, metric.higher_is_better)
        log(f"baseline {base.name}: {metric.name} {base_value:.4g}; allowed error {allowed:.4g} ({config.budget})")
        ctx = BuildContext(staging, manifest, base.file, config, machine, calibration, train, _is_transformer(manifest),
                           search.proxy, search.calibration_error, allowed, log)
        outcomes = _build(ctx, deadline)
        built = [o for o in outcomes if isinstance(o, Candidate)]
        skipped = [o for o in outcomes if isinstance(o, Skipped)]
        timing_base = base if config.target == "cpu" else _gpu_baseline(built, skipped)
        if config.target == "cuda":
            notes.append(f"--target cuda: speed is judged against {timing_base.name} on the GPU; fidelity against "
                         f"the source's {base.name} on the CPU, which is also timed for comparison")
        candidates = [timing_base] + [c for c in [base, *built] if c is not timing_base]

        rows: list[Row] = []
        models: dict[str, Model] = {}
        for c in candidates:
            row = Row(c.name, c.family, c.backend, c.precision, c.file, file_size(staging, c.file), c.notes,
                      device=c.device, options=c.options)
            rows.append(row)
            try:
                models[c.name] = model = search.load(c)
                got = reference if c is base else outputs_on(model, evaluation, metric.output, config.serving_batch)
            except Exception as exc:  # a variant that does not load or run is rejected, not fatal
                row.reason = f"failed to run: {describe(exc)}"
                models.pop(c.name, None)
                continue
            row.metric_value = metric.score(got, reference, evaluation.labels)
            row.error = metric.error(row.metric_value, base_value)
            log(f"{c.name}: {metric.name} {row.metric_value:.4g} (error {row.error:.4g})")
        log(f"timing {len(models)} variants interleaved, {config.rounds} rounds")
        single, batch = evaluation.batch(1), evaluation.batch(config.serving_batch)
        timings = time_interleaved({n: Workload(m.infer, single, batch) for n, m in models.items()}, config.rounds)
        for row in rows:
            row.timing = timings.get(row.name)
        choice, why = decide(rows, rows[0], allowed)

        kept = {r.name: r for r in rows if r.kept}
        wanted = {manifest.provenance.weights_file, *(r.file for r in kept.values())} | set(manifest.files)
        for row in rows:
            if row.file not in wanted:
                path = staging / row.file
                for p in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
                    p.unlink(missing_ok=True)
        variants = {
            r.name: Variant(file=r.file, backend=r.backend, device=r.device, precision=r.precision,  # type: ignore[arg-type]
                            options=r.options, max_rel_error=manifest.variants[r.name].max_rel_error if r.name in manifest.variants else {},
                            metrics=_variant_metrics(r, metric), notes=r.notes)
            for r in kept.values()
        }
        result = Result(manifest, metric, timing_base.name, choice, allowed, rows, skipped, machine, config,
                        calibration.source, evaluation.source, len(evaluation), time.monotonic() - started, why, notes)
        (staging / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n")
        write_report(staging, result)
        final = manifest.model_copy(update={
            "variants": {**{k: v for k, v in manifest.variants.items() if k not in variants}, **variants},
            "default_variant": choice, "files": hash_files(staging),
        })
        final = Manifest.model_validate(final.model_dump())
        result.manifest = write_manifest(staging, final)
    return result


def _gpu_baseline(built: list[Candidate], skipped: list[Skipped]) -> Candidate:
    """The fp32 variant on the GPU that others must beat: PyTorch eager, else ORT's CUDA provider."""
    for name in ("torch-fp32", "ort-cuda-fp32"):
        found = next((c for c in built if c.name == name), None)
        if found is not None:
            return found
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped) or "no GPU family was asked for"
    raise InvalidInput(f"--target cuda: no fp32 variant could be built for the GPU ({reasons})")


def _variant_metrics(row: Row, metric: Metric) -> dict[str, float]:
    values: dict[str, float] = {"size_bytes": float(row.size_bytes)}
    if row.metric_value is not None and row.error is not None:
        values[metric.name] = round(row.metric_value, 6)
        values[f"{metric.name}_error"] = round(row.error, 6)
    if row.timing is not None:
        values.update(row.timing.as_metrics())
    return values
