"""The optimisation report: `report.json` for machines, `report.md` for people, `pareto.png`.

One row per variant — built, failed or skipped — with backend, precision, size, latencies,
metric, error and the verdict with its reason, so that a choice can be checked, not trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from bushu.optimize.search import Result, Row

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PARETO_PNG = "pareto.png"


def _row_json(row: Row) -> dict[str, Any]:
    timing = row.timing
    return {
        "variant": row.name, "family": row.family, "backend": row.backend, "device": row.device,
        "options": row.options, "precision": row.precision,
        "file": row.file, "size_bytes": row.size_bytes, "metric": row.metric_value, "error": row.error,
        "confirmation": {"metric": row.confirm_value, "error": row.confirm_error,
                         "error_interval_95": None if row.interval is None else list(row.interval)},
        "held_out": None if row.held_out_value is None else {"metric": row.held_out_value, "error": row.held_out_error},
        "latency_ms": None if timing is None else {
            "p50_b1": timing.p50_ms_b1, "p95_b1": timing.p95_ms_b1,
            f"p50_b{timing.batch}": timing.p50_ms_batch, f"p95_b{timing.batch}": timing.p95_ms_batch,
        },
        "throughput_per_s": None if timing is None else timing.throughput,
        "kept": row.kept, "reason": row.reason, "notes": row.notes,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: Sequence[Row], metric: str, chosen: str | None = None, baseline: str | None = None) -> str:
    """The Markdown table of variants (shared by `optimize` and `compare`)."""
    batch = next((r.timing.batch for r in rows if r.timing), 0)
    base_speed = next((r.timing.throughput for r in rows if r.name == baseline and r.timing), None)
    held = any(r.held_out_value is not None for r in rows)
    head = (f"| variant | backend | precision | size MB | p50/p95 ms b1 | p50/p95 ms b{batch} | per s | "
            f"× base | {metric} (selection) | error | {metric} (confirmation) | error | "
            f"{f'{metric} (held out, not used) | ' if held else ''}verdict |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        t = r.timing
        mark = " **(chosen)**" if r.name == chosen else ""
        ratio = None if t is None or not base_speed else t.throughput / base_speed
        held_cell = f"{_fmt(r.held_out_value, '.4f')} | " if held else ""
        lines.append(
            f"| {r.name}{mark} | {r.backend}{'' if r.device == 'cpu' else f' ({r.device})'} | {r.precision} | {r.size_bytes / 1e6:.2f} | "
            f"{_fmt(t and t.p50_ms_b1, '.2f')}/{_fmt(t and t.p95_ms_b1, '.2f')} | "
            f"{_fmt(t and t.p50_ms_batch, '.1f')}/{_fmt(t and t.p95_ms_batch, '.1f')} | "
            f"{_fmt(t and t.throughput, '.0f')} | {_fmt(ratio, '.2f')} | {_fmt(r.metric_value, '.4f')} | "
            f"{_fmt(r.error, '.4f')} | {_fmt(r.confirm_value, '.4f')} | {_fmt(r.confirm_error, '.4f')} | "
            f"{held_cell}"
            f"{'kept' if r.kept else 'rejected'}: {r.reason} |"
        )
    return "\n".join(lines)


def _markdown(result: Result) -> str:
    cfg = result.config
    hw = result.hardware.summary()
    chosen = next((r for r in result.rows if r.name == result.choice), None)
    interval = [] if chosen is None or chosen.interval is None else [
        f"- `{chosen.name}` on confirmation: error {chosen.confirm_error:.4g}, 95% bootstrap interval "
        f"{chosen.interval[0]:.4g} to {chosen.interval[1]:.4g} (1000 paired resamples of the confirmation part)"]
    lines = [
        f"# bushu optimize: {result.manifest.name} v{result.manifest.version}",
        "",
        f"**Choice: `{result.choice}`** — {result.why}.",
        "",
        *interval,
        f"- metric: {result.metric.name} on output `{result.metric.output}`; selection: {result.eval_source} "
        f"({result.eval_samples} samples); confirmation: {result.confirm_source} ({result.confirm_samples} samples); "
        f"calibration: {result.calibration_source}",
        f"- budget: {cfg.budget} → allowed error {result.allowed_error:.4g} on selection, "
        f"{result.confirm_allowed_error:.4g} on confirmation",
        f"- measured interleaved: {cfg.rounds} rounds, batch 1 and {cfg.serving_batch}, {cfg.threads} thread(s)",
        f"- hardware: {hw['cpu']}, {hw['cores']} core(s); flags {', '.join(hw['flags']) or 'none'}; "  # type: ignore[arg-type]
        f"CUDA: {hw['cuda'] or 'none'}",
        f"- search took {result.seconds:.0f} s",
        *(f"- {note}" for note in result.notes),
        "",
        *(["## Warnings: the data may not support the budget", "", *(f"- {w}" for w in result.warnings), ""]
          if result.warnings else []),
        "## How the data was split",
        "",
        *(f"- {line}" for line in result.splits),
        "",
        "## Variants",
        "",
        table(result.rows, result.metric.name, result.choice, result.baseline),
        "",
    ]
    if result.skipped:
        lines += ["## Not built", "", "| variant | family | why |", "|---|---|---|"]
        lines += [f"| {s.name} | {s.family} | {s.reason} |" for s in result.skipped]
        lines.append("")
    lines += ["## Notes per variant", ""] + [f"- `{r.name}`: {r.notes}" for r in result.rows if r.notes] + [""]
    return "\n".join(lines)


def _pareto(result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in result.rows:
        if r.timing is None or r.error is None:
            continue
        color = "tab:green" if r.name == result.choice else ("tab:blue" if r.kept else "tab:red")
        ax.scatter(r.timing.p50_ms_batch, r.error, color=color, s=36)
        ax.annotate(r.name, (r.timing.p50_ms_batch, r.error), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(result.allowed_error, color="grey", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel(f"p50 latency at batch {result.config.serving_batch} (ms)")
    ax.set_ylabel(f"{result.metric.name} error vs baseline")
    ax.set_title(f"{result.manifest.name}: latency against error (green: chosen, red: rejected)", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(directory: Path, result: Result) -> None:
    body = {
        "model": result.manifest.name, "version": result.manifest.version, "choice": result.choice,
        "why": result.why, "baseline": result.baseline,
        "metric": {"name": result.metric.name, "output": result.metric.output,
                   "higher_is_better": result.metric.higher_is_better},
        "budget": str(result.config.budget), "allowed_error": result.allowed_error,
        "eval": {"source": result.eval_source, "samples": result.eval_samples},
        "confirmation": {"source": result.confirm_source, "samples": result.confirm_samples,
                         "allowed_error": result.confirm_allowed_error},
        "calibration": result.calibration_source, "splits": result.splits, "warnings": result.warnings,
        "hardware": result.hardware.summary(),
        "config": result.config.model_dump(mode="json"), "seconds": result.seconds, "notes": result.notes,
        "variants": [_row_json(r) for r in result.rows],
        "skipped": [{"variant": s.name, "family": s.family, "reason": s.reason} for s in result.skipped],
    }
    (directory / REPORT_JSON).write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    (directory / REPORT_MD).write_text(_markdown(result), encoding="utf-8")
    _pareto(result, directory / PARETO_PNG)
