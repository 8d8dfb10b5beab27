"""`bushu optimize`: build candidate variants, measure them all alike, keep the fastest in budget.

The source package is read, never written: the result is a new package holding the source's
files, the kept variants, the settings used (`optimize.json`) and the report. The user's data
is cut into disjoint calibration, selection and confirmation parts (`splits`). The choice is the
variant with the highest throughput at the serving batch (`bushu serve`'s default max batch)
whose error is within budget on the selection part and again on the confirmation part — never
one slower than the fp32 baseline; when the fastest on selection fails confirmation, the
next-fastest that holds is chosen, and the report says so; when none beats the baseline, the
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
from bushu.optimize.data_checks import check_data
from bushu.optimize.fidelity import Metric, bootstrap_error, choose_metric
from bushu.optimize.measure import Timing, Workload, time_interleaved
from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, describe
from bushu.optimize.samples import Samples, ensure_disjoint, load_samples
from bushu.optimize.splits import Splits, make_splits
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
    #: The metric and its error on the selection part (what the choice is made on).
    metric_value: float | None = None
    error: float | None = None
    timing: Timing | None = None
    kept: bool = False
    reason: str = ""
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    #: The same on the confirmation part, which the choice must also hold on.
    confirm_value: float | None = None
    confirm_error: float | None = None
    #: A bootstrap interval of the confirmation error (the chosen variant only).
    interval: tuple[float, float] | None = None
    #: The same on a held-out file that is only reported, never used to choose (`held_out_file`).
    held_out_value: float | None = None
    held_out_error: float | None = None


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
    confirm_source: str = ""
    confirm_samples: int = 0
    confirm_allowed_error: float = 0.0
    #: Data too small or too narrow to support the budget (also printed by the CLI).
    warnings: list[str] = field(default_factory=list)
    #: How calibration, selection and confirmation were made disjoint.
    splits: list[str] = field(default_factory=list)


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


def _g(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4g}"


def _judge_selection(row: Row, baseline: Row, allowed: float) -> None:
    base_speed = baseline.timing.throughput  # type: ignore[union-attr]
    if row is baseline:
        row.kept, row.reason = True, "the fp32 baseline"
    elif row.reason:  # failed to load or run
        return
    elif row.error is None or row.error > allowed:
        row.reason = f"over budget on selection: error {row.error:.4g} > allowed {allowed:.4g}"
    elif row.timing is None or row.timing.throughput <= base_speed:
        speed = row.timing.throughput if row.timing else 0.0
        row.reason = f"slower than the fp32 baseline ({speed:.1f}/s vs {base_speed:.1f}/s)"
    else:
        row.kept, row.reason = True, "within budget on selection and confirmation, faster than the baseline"


def decide(rows: list[Row], baseline: Row, allowed: float, confirm_allowed: float | None = None) -> tuple[str, str]:
    """Mark kept/rejected rows; return the chosen variant and why.

    The fastest variant within budget on the selection part is chosen if it also holds on the
    confirmation part; if not, the next-fastest that holds on both, and `why` says so. Only
    variants that hold on both are kept.
    """
    if baseline.timing is None:  # e.g. PyTorch fp32 failing on the GPU: nothing to measure speed against
        raise BushuError(f"the fp32 baseline {baseline.name} could not be measured: {baseline.reason or 'no timing'}")
    confirm_allowed = allowed if confirm_allowed is None else confirm_allowed
    base_speed = baseline.timing.throughput
    for row in rows:
        _judge_selection(row, baseline, allowed)
    passed = sorted((r for r in rows if r.kept and r is not baseline), key=lambda r: -r.timing.throughput)  # type: ignore[union-attr]
    failed: list[Row] = []
    for row in passed:
        if row.confirm_error is None or row.confirm_error > confirm_allowed:
            row.kept = False
            row.reason = (f"failed confirmation: error {_g(row.confirm_error)} > allowed {confirm_allowed:.4g} "
                          f"(held on selection at {row.error:.4g})")
            failed.append(row)
    best = next((r for r in passed if r.kept), baseline)
    fell_back = [r for r in failed if r.timing.throughput > best.timing.throughput]  # type: ignore[union-attr]
    fallback = ""
    if fell_back:
        first = fell_back[0]
        fallback = (f"; {first.name}, the fastest on selection ({first.timing.throughput / base_speed:.2f}×, "  # type: ignore[union-attr]
                    f"error {first.error:.4g}), failed confirmation (error {_g(first.confirm_error)} > "
                    f"{confirm_allowed:.4g})" + (f" as did {', '.join(r.name for r in fell_back[1:])}" if len(fell_back) > 1 else "")
                    + ", so the search fell back to the next-fastest that holds on both")
    if best is baseline:
        within = [r for r in rows if r.error is not None and r.error <= allowed and r is not baseline]
        why = ("no variant beat the fp32 baseline's throughput within the budget; keeping the baseline"
               if within and not failed else
               "no variant stayed within the budget on both selection and confirmation; keeping the baseline"
               if failed else "no variant stayed within the budget; keeping the baseline")
        return baseline.name, why + fallback
    best.reason = "chosen: the fastest within budget on selection and confirmation"
    return best.name, (f"{best.name} is the fastest within budget: {best.timing.throughput / base_speed:.2f}× "  # type: ignore[union-attr]
                       f"the baseline's throughput at batch {best.timing.batch}, error {best.error:.4g} on selection "  # type: ignore[union-attr]
                       f"and {best.confirm_error:.4g} on confirmation ≤ {confirm_allowed:.4g}{fallback}")


def optimize(
    source: str | Path,
    out: str | Path,
    config: OptimizeConfig,
    *,
    eval_file: str | Path,
    calibration_file: str | Path | None = None,
    confirm_file: str | Path | None = None,
    train_file: str | Path | None = None,
    held_out_file: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Result:
    """Search variants of the package at `source`; write the result package to `out`.

    The eval data is cut into calibration, selection and confirmation parts (`splits`); a
    `confirm_file`, when given, is the confirmation part instead of half of the eval file. A
    `held_out_file` is measured for every variant and reported, and plays no part in the choice.
    """
    started = time.monotonic()
    root = Path(source)
    manifest, machine, splits, metric, parts = _prepare(root, Path(out), config, eval_file, calibration_file,
                                                        confirm_file, train_file, held_out_file)
    deadline = started + config.max_minutes * 60 if config.max_minutes else None
    with staged_package(out, force=force) as staging:
        for rel in manifest.files:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, staging / rel)
        search = _Search(staging, manifest, config, metric, splits.calibration)
        base = search.baseline
        model = search.load(base)
        references = {part: outputs_on(model, samples, metric.output, config.serving_batch)
                      for part, samples in parts.items()}
        base_values = {part: metric.score(references[part], references[part], samples.labels)
                       for part, samples in parts.items()}
        allowed = config.budget.allowed_error(base_values["selection"], metric.higher_is_better)
        confirm_allowed = config.budget.allowed_error(base_values["confirmation"], metric.higher_is_better)
        log(f"baseline {base.name}: {metric.name} {base_values['selection']:.4g}; allowed error {allowed:.4g} "
            f"({config.budget})")
        broad = None if splits.broad is None else outputs_on(model, splits.broad, metric.output, config.serving_batch)
        warnings = check_data(metric, allowed, {k: parts[k] for k in ("selection", "confirmation")}, references, broad)
        for warning in warnings:
            log(f"warning: {warning}")
        ctx = BuildContext(staging, manifest, base.file, config, machine, splits.calibration, splits.train,
                           _is_transformer(manifest), search.proxy, search.calibration_error, allowed, log,
                           splits.unlabelled)
        outcomes = _build(ctx, deadline)
        built = [o for o in outcomes if isinstance(o, Candidate)]
        skipped = [o for o in outcomes if isinstance(o, Skipped)]
        timing_base = base if config.target == "cpu" else _gpu_baseline(built, skipped)
        notes: list[str] = []
        if config.target == "cuda":
            notes.append(f"--target cuda: speed is judged against {timing_base.name} on the GPU; fidelity against "
                         f"the source's {base.name} on the CPU, which is also timed for comparison")
        candidates = [timing_base] + [c for c in [base, *built] if c is not timing_base]
        rows, models, confirmed = _score(search, candidates, parts, references, base_values, log)
        log(f"timing {len(models)} variants interleaved, {config.rounds} rounds, batch 1 and {config.serving_batch}")
        single, batch = splits.selection.batch(1), splits.selection.batch(config.serving_batch)
        timings = time_interleaved({n: Workload(m.infer, single, batch) for n, m in models.items()}, config.rounds)
        for row in rows:
            row.timing = timings.get(row.name)
        choice, why = decide(rows, rows[0], allowed, confirm_allowed)
        chosen = next(r for r in rows if r.name == choice)
        if choice in confirmed:
            chosen.interval = bootstrap_error(metric, confirmed[choice], references["confirmation"],
                                              splits.confirmation.labels, seed=config.seed)
        result = Result(manifest, metric, timing_base.name, choice, allowed, rows, skipped, machine, config,
                        splits.calibration.source, splits.selection.source, len(splits.selection),
                        time.monotonic() - started, why, notes, splits.confirmation.source, len(splits.confirmation),
                        confirm_allowed, warnings, splits.how)
        result.manifest = _write(staging, manifest, result)
    return result


def _prepare(root: Path, out: Path, config: OptimizeConfig, eval_file: str | Path, calibration_file: str | Path | None,
             confirm_file: str | Path | None, train_file: str | Path | None, held_out_file: str | Path | None,
             ) -> tuple[Manifest, hw.Hardware, Splits, Metric, dict[str, Samples]]:
    """Everything checked before anything is written: the source, the target, the data and its parts."""
    config.check()
    manifest = verify_package(root)
    if out.resolve() == root.resolve():
        raise InvalidInput("the output must be a new directory: optimize never changes its source package")
    machine = hw.probe()
    if config.target == "cuda" and machine.cuda is None:
        raise InvalidInput("--target cuda: no CUDA device is visible on this machine; use --target cpu")
    splits = make_splits(manifest, root, config, eval_file, calibration_file, confirm_file, train_file)
    metric = choose_metric(manifest, config.metric, splits.selection.labels is not None)
    if metric.name == "accuracy" and splits.confirmation.labels is None:
        raise InvalidInput(f"metric 'accuracy' needs labels in the confirmation data {splits.confirmation.source}")
    parts = {"selection": splits.selection, "confirmation": splits.confirmation}
    if held_out_file is not None:
        parts["held_out"] = held_out = load_samples(held_out_file, manifest, root)
        for part in (splits.calibration, splits.selection, splits.confirmation):
            ensure_disjoint(held_out, part, "held-out")
        if metric.name == "accuracy" and held_out.labels is None:
            raise InvalidInput(f"metric 'accuracy' needs labels in the held-out data {held_out.source}")
    return manifest, machine, splits, metric, parts


def _score(search: _Search, candidates: list[Candidate], parts: dict[str, Samples], references: dict[str, np.ndarray],
           base_values: dict[str, float], log: Callable[[str], None],
           ) -> tuple[list[Row], dict[str, Model], dict[str, np.ndarray]]:
    """Each candidate's metric on selection and confirmation; the loaded models; confirmation outputs."""
    metric, batch = search.metric, search.config.serving_batch
    rows: list[Row] = []
    models: dict[str, Model] = {}
    confirmed: dict[str, np.ndarray] = {}
    for c in candidates:
        row = Row(c.name, c.family, c.backend, c.precision, c.file, file_size(search.staging, c.file), c.notes,
                  device=c.device, options=c.options)
        rows.append(row)
        try:
            models[c.name] = model = search.load(c)
            got = {part: references[part] if c is search.baseline else outputs_on(model, samples, metric.output, batch)
                   for part, samples in parts.items()}
        except Exception as exc:  # a variant that does not load or run is rejected, not fatal
            row.reason = f"failed to run: {describe(exc)}"
            models.pop(c.name, None)
            continue
        confirmed[c.name] = got["confirmation"]
        values = {part: metric.score(got[part], references[part], samples.labels) for part, samples in parts.items()}
        errors = {part: metric.error(value, base_values[part]) for part, value in values.items()}
        row.metric_value, row.confirm_value = values["selection"], values["confirmation"]
        row.error, row.confirm_error = errors["selection"], errors["confirmation"]
        row.held_out_value, row.held_out_error = values.get("held_out"), errors.get("held_out")
        log(f"{c.name}: {metric.name} {row.metric_value:.4g} on selection, {row.confirm_value:.4g} on confirmation")
    return rows, models, confirmed


def _write(staging: Path, manifest: Manifest, result: Result) -> Manifest:
    """Drop the files of rejected variants; write settings, report and the new manifest."""
    from bushu.optimize.report import write_report

    kept = {r.name: r for r in result.rows if r.kept}
    wanted = {manifest.provenance.weights_file, *(r.file for r in kept.values())} | set(manifest.files)
    for row in result.rows:
        if row.file not in wanted:
            path = staging / row.file
            for p in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
                p.unlink(missing_ok=True)
    variants = {
        r.name: Variant(file=r.file, backend=r.backend, device=r.device, precision=r.precision,  # type: ignore[arg-type]
                        options=r.options, max_rel_error=manifest.variants[r.name].max_rel_error if r.name in manifest.variants else {},
                        metrics=_variant_metrics(r, result.metric), notes=r.notes)
        for r in kept.values()
    }
    (staging / CONFIG_FILE).write_text(result.config.model_dump_json(indent=2) + "\n")
    write_report(staging, result)
    final = manifest.model_copy(update={
        "variants": {**{k: v for k, v in manifest.variants.items() if k not in variants}, **variants},
        "default_variant": result.choice, "files": hash_files(staging),
    })
    return write_manifest(staging, Manifest.model_validate(final.model_dump()))


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
    if row.confirm_value is not None and row.confirm_error is not None:
        values[f"{metric.name}_confirmation"] = round(row.confirm_value, 6)
        values[f"{metric.name}_confirmation_error"] = round(row.confirm_error, 6)
    if row.timing is not None:
        values.update(row.timing.as_metrics())
        values["serving_batch"] = float(row.timing.batch)
    return values
