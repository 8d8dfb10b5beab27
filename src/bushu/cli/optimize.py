"""`bushu optimize | compare`: the budgeted variant search, and packages measured side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bushu.cli.common import Force, app, cleans_up_on_sigterm, err, out, user_errors
from bushu.errors import BushuError, InvalidInput


@app.command()
@user_errors
@cleans_up_on_sigterm
def optimize(
    package: Annotated[Path, typer.Argument(help="source package directory (never changed)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="new package directory to write")],
    eval_file: Annotated[Path, typer.Option("--eval", help=".npz of inputs (+ labels), or .txt of texts for a text package "
                                                          "(of prompts, one a line, for a generation package)")],
    calibration: Annotated[Path | None, typer.Option(help="calibration data, disjoint from --eval (default: held out of it)")] = None,
    confirm: Annotated[Path | None, typer.Option(help="data the choice must also hold on, disjoint from the rest "
                                                     "(default: half of --eval after calibration)")] = None,
    held_out: Annotated[Path | None, typer.Option("--held-out", help="data measured and reported for every "
                                                                    "variant, never used to choose")] = None,
    train: Annotated[Path | None, typer.Option(help="labelled training .npz, for pruning's fine-tune")] = None,
    target: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    budget: Annotated[str, typer.Option(help="allowed loss: '1%' of the baseline's metric, or absolute '0.01'")] = "1%",
    metric: Annotated[str | None, typer.Option(help="accuracy, macro_f1, top1_agreement, cosine or relative_error "
                                                      "(a generator: perplexity or greedy_agreement)")] = None,
    preset: Annotated[str, typer.Option(help="quick, default or thorough")] = "default",
    families: Annotated[str | None, typer.Option(help="comma-separated variant families, instead of the preset's "
                                                      "(e.g. pytorch,pytorch-compile)")] = None,
    threads: Annotated[int | None, typer.Option(help="threads per session (default 2)")] = None,
    batch: Annotated[int | None, typer.Option(help="serving batch size (default: bushu serve's max batch, 32; "
                                                   "a generator: concurrent streams, default 16)")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="stop building new variants after this long")] = None,
    force: Force = False,
) -> None:
    """Search variants across runtimes; keep the fastest within the accuracy budget, with a report."""
    from bushu.optimize import optimize as run_optimize
    from bushu.optimize import parse_budget
    from bushu.optimize import preset as named_preset

    if target not in ("cpu", "cuda"):
        raise InvalidInput(f"--target {target!r}: choose cpu or cuda")
    chosen = tuple(f.strip() for f in families.split(",") if f.strip()) if families is not None else None
    if _is_generation(package):  # a generator's variants are scored and timed through its decode loop
        _optimize_generator(package, output, eval_file, parse_budget(budget), metric, chosen, threads, batch, force)
        return
    config = named_preset(preset, target=target, budget=parse_budget(budget), metric=metric, threads=threads,
                          serving_batch=batch, max_minutes=max_minutes, families=chosen)
    result = run_optimize(package, output, config, eval_file=eval_file, calibration_file=calibration,
                          confirm_file=confirm, train_file=train, held_out_file=held_out, force=force,
                          log=lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    from bushu.optimize.report import table

    out.print(table(result.rows, result.metric.name, result.choice, result.baseline), markup=False, highlight=False,
              soft_wrap=True)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out.print(f"chose [bold]{result.choice}[/]: {result.why}\nwrote {output} (report.md, report.json, pareto.png)",
              highlight=False)


def _is_generation(package: Path) -> bool:
    from bushu.generate.package import is_generation
    from bushu.package.store import read_manifest

    return (package / "bushu.json").is_file() and is_generation(read_manifest(package))


def _optimize_generator(package: Path, output: Path, eval_file: Path, budget, metric: str | None,
                        families: tuple[str, ...] | None, threads: int | None, streams: int | None, force: bool) -> None:
    from bushu.optimize.generation import optimize_generator, report

    result = optimize_generator(package, output, eval_file=eval_file, budget=budget, metric=metric, families=families,
                                threads=threads or 2, streams=streams or 16, force=force,
                                log=lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    out.print(report(result), markup=False, highlight=False, soft_wrap=True)
    out.print(f"wrote {output} (report.md)", highlight=False)


@app.command()
@user_errors
def compare(
    packages: Annotated[list[Path], typer.Argument(help="candidate package directories")],
    eval_file: Annotated[Path, typer.Option("--eval", help=".npz of inputs (+ labels), or .txt of texts")],
    goal: Annotated[str, typer.Option(help="latency: fastest within --budget of the best metric; "
                                           "accuracy: best metric within --max-latency-ms")] = "latency",
    budget: Annotated[str, typer.Option(help="for goal latency: '1%' or absolute '0.01'")] = "1%",
    max_latency_ms: Annotated[float | None, typer.Option(help="for goal accuracy: p95 ms at batch 1")] = None,
    metric: Annotated[str | None, typer.Option(help="accuracy, top1_agreement, cosine or relative_error")] = None,
    threads: Annotated[int | None, typer.Option(help="threads per session (default 2)")] = None,
    batch: Annotated[int | None, typer.Option(help="serving batch size (default 64)")] = None,
) -> None:
    """Measure candidate packages on the same data and hardware; name the one that best meets the goal."""
    from bushu.optimize import parse_budget
    from bushu.optimize import preset as named_preset
    from bushu.optimize.compare import compare as run_compare
    from bushu.optimize.report import table

    config = named_preset("default", budget=parse_budget(budget), metric=metric, threads=threads, serving_batch=batch)
    result = run_compare(packages, eval_file, config, goal=goal, max_latency_ms=max_latency_ms)
    out.print(table(result.rows, result.metric.name, result.choice, result.rows[0].name), markup=False, highlight=False, soft_wrap=True)
    if result.choice is None:
        raise BushuError(result.why)
    out.print(f"best: [bold]{result.choice}[/] — {result.why}", highlight=False)
