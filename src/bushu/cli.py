"""The `bushu` command: one thin function per verb, each calling the library.

Heavy imports (torch, onnxruntime) happen inside the verbs so `bushu --help` is instant.
Every `BushuError` becomes a one-line message on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bushu.errors import BushuError, InvalidInput

app = typer.Typer(
    no_args_is_help=True, add_completion=False,
    help="bushu (部署): package, verify, optimise, protect and serve trained models.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train an application model and package it.")
app.add_typer(train_app, name="train")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BushuError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@_user_errors
def pack(
    source: Annotated[str, typer.Argument(help="a .onnx file, a transformers model directory, or module:Class "
                                               "(or file.py:Class) of an nn.Module")],
    output: Annotated[Path, typer.Option("-o", "--output", help="package directory to write")],
    weights: Annotated[Path | None, typer.Option(help="state dict (.pt/.pth via weights_only, or .safetensors)")] = None,
    input: Annotated[list[str] | None, typer.Option("--input", help="NAME:DTYPE:SHAPE, e.g. image:FP32:batch,3,32,32")] = None,
    output_name: Annotated[list[str] | None, typer.Option("--output-name", help="name of each output, in order")] = None,
    name: Annotated[str | None, typer.Option(help="model name (default: from the source)")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1",
    task: Annotated[str, typer.Option(help="task, e.g. image-classification")] = "generic",
    labels: Annotated[str | None, typer.Option(help="comma-separated class labels")] = None,
    kwargs: Annotated[str | None, typer.Option(help="JSON object of constructor arguments")] = None,
    tolerance: Annotated[float, typer.Option(help="max relative error accepted at export")] = 1e-4,
    max_length: Annotated[int | None, typer.Option(help="text packages: tokens per text at most")] = None,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Package a model: export and verify a PyTorch module or a transformers encoder, or take an ONNX file as it is."""
    from bushu.export.hf import is_hf_directory

    label_list = [x.strip() for x in labels.split(",")] if labels else None
    if is_hf_directory(source):
        if weights or input:
            raise InvalidInput("--weights and --input apply to PyTorch sources; a transformers directory has its own")
        from bushu.export.hf import pack_hf_encoder

        manifest = pack_hf_encoder(source, output, name=name, version=version, max_length=max_length, force=force)
    elif source.endswith(".onnx") and Path(source).is_file():
        if weights or input:
            raise InvalidInput("--weights and --input apply to PyTorch sources; an ONNX file states its own inputs")
        from bushu.export.pack import pack_onnx

        manifest = pack_onnx(source, output, name=name, version=version, task=task, labels=label_list, force=force)
    else:
        from bushu.export.pack import pack_module
        from bushu.export.source import build_module
        from bushu.export.specs import parse_input_spec
        from bushu.package.store import sha256_file

        if not input:
            raise InvalidInput("a PyTorch source needs --input NAME:DTYPE:SHAPE for each forward() argument")
        try:
            ctor = json.loads(kwargs) if kwargs else {}
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--kwargs is not valid JSON: {exc}") from None
        if not isinstance(ctor, dict):
            raise InvalidInput("--kwargs must be a JSON object")
        module = build_module(source, weights, ctor)
        manifest = pack_module(
            module, [parse_input_spec(s) for s in input], output,
            name=name or source.rpartition(":")[2], version=version, task=task,
            output_names=output_name, labels=label_list, source=source,
            source_sha256=sha256_file(weights) if weights else None, tolerance=tolerance, force=force,
        )
    variant = manifest.variants[manifest.default_variant]
    errors = ", ".join(f"{k} {v:.2e}" for k, v in variant.max_rel_error.items())
    out.print(f"packed [bold]{manifest.name}[/] v{manifest.version} → {output}" + (f"  (verified: {errors})" if errors else ""))


@app.command()
@_user_errors
def inspect(
    package: Annotated[Path, typer.Argument(help="package directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
) -> None:
    """Show a package's manifest: inputs, outputs, variants, metrics and files."""
    from bushu.package.store import read_manifest

    manifest = read_manifest(package)
    if as_json:
        sys.stdout.write(manifest.to_json().decode())
        return
    out.print(f"[bold]{manifest.name}[/] v{manifest.version}  task={manifest.task}  framework={manifest.framework}")
    tensors = Table("", "name", "datatype", "shape", title="tensors")
    for kind, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        for s in specs:
            shape = [d if d is not None else n for n, d in zip(s.shape, s.dim_names())]
            tensors.add_row(kind, s.name, s.datatype, str(shape))
    out.print(tensors)
    variants = Table("variant", "file", "backend", "device", "precision", "max rel. error", title="variants")
    for key, v in manifest.variants.items():
        errors = ", ".join(f"{k}={e:.2e}" for k, e in v.max_rel_error.items())
        mark = " (default)" if key == manifest.default_variant else ""
        variants.add_row(key + mark, v.file, v.backend, v.device, v.precision, errors)
    out.print(variants)
    if manifest.metrics:
        out.print("metrics: " + ", ".join(f"{k}={v:g}" for k, v in manifest.metrics.items()))
    if manifest.labels:
        out.print(f"labels: {', '.join(manifest.labels)}")
    out.print(f"files: {len(manifest.files)}, created {manifest.provenance.created:%Y-%m-%d %H:%M} UTC "
              f"by bushu {manifest.provenance.bushu_version}")


@app.command()
@_user_errors
def verify(package: Annotated[Path, typer.Argument(help="package directory")]) -> None:
    """Re-hash every file of a package; fail, naming each file that changed."""
    from bushu.package.store import verify_package

    manifest = verify_package(package)
    out.print(f"ok: {package} — manifest and {len(manifest.files)} file(s) match")


@app.command()
@_user_errors
def infer(
    package: Annotated[Path, typer.Argument(help="package directory")],
    input: Annotated[list[str], typer.Option("--input", help="NAME=file.npy for each input")],
    variant: Annotated[str | None, typer.Option(help="variant to run (default: the manifest's)")] = None,
    save_to: Annotated[Path | None, typer.Option("--out", help="directory to write OUTPUT.npy files")] = None,
) -> None:
    """Run a package on .npy inputs; print the outputs (and write them with --out)."""
    import numpy as np

    import bushu

    arrays = {}
    for item in input:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InvalidInput(f"--input {item!r}: expected NAME=file.npy")
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"--input {item!r}: cannot read {file} as .npy ({exc})") from None
    results = bushu.load(package, variant).infer(arrays)
    if save_to:
        save_to.mkdir(parents=True, exist_ok=True)
        for name, value in results.items():
            np.save(save_to / f"{name}.npy", value)
    with np.printoptions(precision=6, suppress=True, threshold=200):
        for name, value in results.items():
            out.print(f"[bold]{name}[/] {value.dtype} {list(value.shape)}", highlight=False)
            out.print(str(value), highlight=False, markup=False)


@app.command()
@_user_errors
def optimize(
    package: Annotated[Path, typer.Argument(help="source package directory (never changed)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="new package directory to write")],
    eval_file: Annotated[Path, typer.Option("--eval", help=".npz of inputs (+ labels), or .txt of texts for a text package")],
    calibration: Annotated[Path | None, typer.Option(help="calibration data, disjoint from --eval (default: held out of it)")] = None,
    train: Annotated[Path | None, typer.Option(help="labelled training .npz, for pruning's fine-tune")] = None,
    target: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    budget: Annotated[str, typer.Option(help="allowed loss: '1%' of the baseline's metric, or absolute '0.01'")] = "1%",
    metric: Annotated[str | None, typer.Option(help="accuracy, top1_agreement, cosine or relative_error")] = None,
    preset: Annotated[str, typer.Option(help="quick, default or thorough")] = "default",
    threads: Annotated[int | None, typer.Option(help="threads per session (default 2)")] = None,
    batch: Annotated[int | None, typer.Option(help="serving batch size (default 64)")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="stop building new variants after this long")] = None,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Search variants across runtimes; keep the fastest within the accuracy budget, with a report."""
    from bushu.optimize import optimize as run_optimize
    from bushu.optimize import parse_budget
    from bushu.optimize import preset as named_preset

    if target not in ("cpu", "cuda"):
        raise InvalidInput(f"--target {target!r}: choose cpu or cuda")
    config = named_preset(preset, target=target, budget=parse_budget(budget), metric=metric, threads=threads,
                          serving_batch=batch, max_minutes=max_minutes)
    result = run_optimize(package, output, config, eval_file=eval_file, calibration_file=calibration,
                          train_file=train, force=force, log=lambda m: err.print(f"[dim]{m}[/]", highlight=False))
    from bushu.optimize.report import table

    out.print(table(result.rows, result.metric.name, result.choice, result.baseline), markup=False, highlight=False,
              soft_wrap=True)
    out.print(f"chose [bold]{result.choice}[/]: {result.why}\nwrote {output} (report.md, report.json, pareto.png)",
              highlight=False)


@app.command()
@_user_errors
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


@train_app.command("vision")
@_user_errors
def train_vision(
    output: Annotated[Path, typer.Option("-o", "--output", help="package directory to write")],
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 10,
    seed: Annotated[int, typer.Option(help="random seed (split, init, order)")] = 0,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Train the seed CNN on scikit-learn's digits, evaluate on a held-out split, and package it."""
    from bushu.apps import vision
    from bushu.progress import epoch_bar

    with epoch_bar("training the seed CNN", epochs) as advance:
        trained = vision.train(epochs=epochs, seed=seed, progress=advance)
    out.print(f"held-out accuracy {trained.test_accuracy:.2%} on {len(trained.split.test_labels)} images "
              f"({trained.train_seconds:.1f} s training)")
    manifest = vision.package(trained, output, force=force)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@app.command()
@_user_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its packages")] = Path("bushu-demo"),
) -> None:
    """Train, package, verify and run the vision app end to end."""
    from bushu.demo import run_demo

    run_demo(workdir, out)
