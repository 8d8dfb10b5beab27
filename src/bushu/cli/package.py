"""`bushu pack | inspect | verify | keygen | sign | encrypt | infer`: making, checking and running a package."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bushu.cli.common import Force, Output, app, cleans_up_on_sigterm, out, user_errors
from bushu.errors import InvalidInput


@app.command()
@user_errors
@cleans_up_on_sigterm
def pack(
    source: Annotated[str, typer.Argument(help="a .onnx file, a Keras file (.keras/.h5), a SavedModel directory, a "
                                               ".tflite file, a Caffe deploy.prototxt, a transformers model "
                                               "directory, or module:Class (or file.py:Class) of an nn.Module")],
    output: Output,
    weights: Annotated[Path | None, typer.Option(help="state dict (.pt/.pth via weights_only, or .safetensors), "
                                                      "or a Caffe .caffemodel")] = None,
    input: Annotated[list[str] | None, typer.Option("--input", help="NAME:DTYPE:SHAPE, e.g. image:FP32:batch,3,32,32")] = None,
    output_name: Annotated[list[str] | None, typer.Option("--output-name", help="name of each output, in order")] = None,
    name: Annotated[str | None, typer.Option(help="model name (default: from the source)")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1",
    task: Annotated[str, typer.Option(help="task, e.g. image-classification")] = "generic",
    labels: Annotated[str | None, typer.Option(help="comma-separated class labels")] = None,
    kwargs: Annotated[str | None, typer.Option(help="JSON object of constructor arguments")] = None,
    tolerance: Annotated[float, typer.Option(help="max relative error accepted at export")] = 1e-4,
    max_length: Annotated[int | None, typer.Option(help="text packages: tokens per text at most")] = None,
    verify_prompts: Annotated[int, typer.Option(help="generators: greedy prompts checked against generate()")] = 50,
    generation: Annotated[str | None, typer.Option(help="generators: JSON of generation defaults "
                                                         "(max_new_tokens, temperature, top_k, top_p, stop, ...)")] = None,
    force: Force = False,
) -> None:
    """Package a model: export and verify a PyTorch module, a transformers encoder, or a Keras, TensorFlow,
    TFLite or Caffe model (verified against its own framework), or take an ONNX file as it is."""
    from bushu.export.hf import is_hf_directory
    from bushu.export.importers import FRAMEWORKS
    from bushu.export.pack import framework_of

    label_list = [x.strip() for x in labels.split(",")] if labels else None
    framework = framework_of(Path(source))
    if framework not in FRAMEWORKS:
        _check_source(source)  # a missing path, or one pack cannot read, is named before anything runs
    if framework in FRAMEWORKS:
        if input:
            raise InvalidInput(f"--input applies to PyTorch sources; a {framework} model states its own inputs")
        from bushu.export.importers import pack_imported

        manifest = pack_imported(source, output, framework=framework, weights=weights, name=name, version=version,
                                 task=task, labels=label_list, tolerance=tolerance, force=force)
    elif is_hf_directory(source):
        if weights or input:
            raise InvalidInput("--weights and --input apply to PyTorch sources; a transformers directory has its own")
        from bushu.export.hf import _name, hf_task, pack_hf_encoder

        if hf_task(source) == "feature-extraction":
            manifest = pack_hf_encoder(source, output, name=name, version=version, max_length=max_length, force=force)
        else:
            from bushu.export.hf_generate import pack_hf_generator

            manifest = pack_hf_generator(source, output, name=name or _name(Path(source)), version=version,
                                         prompts=verify_prompts, tolerance=tolerance, force=force,
                                         defaults=_json_object(generation, "--generation"))
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
        ctor = _json_object(kwargs, "--kwargs")
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


def _check_source(source: str) -> None:
    """A source that names a file or folder must exist, and be one that `pack` knows how to read."""
    module, colon, _ = source.rpartition(":")
    if colon and not module.endswith(".py") and "/" not in module:
        return  # module:Class, imported later
    path = Path(module if colon else source)
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or directory")
    if not colon and path.is_dir() and not (path / "config.json").is_file():
        raise InvalidInput(f"{path}: a directory, but not a transformers model (no config.json)")
    if not colon and path.is_file() and path.suffix != ".onnx":
        raise InvalidInput(f"{path}: not an .onnx file; for a PyTorch module pass module:Class or file.py:Class")


def _json_object(text: str | None, option: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{option} must be a JSON object")
    return value


@app.command()
@user_errors
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
    made_with = f" ({manifest.provenance.framework_version})" if manifest.provenance.framework_version else ""
    out.print(f"[bold]{manifest.name}[/] v{manifest.version}  task={manifest.task}  framework={manifest.framework}{made_with}")
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
@user_errors
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
@user_errors
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
@user_errors
def sign(
    package: Annotated[Path, typer.Argument(help="package directory")],
    key: Annotated[Path, typer.Option(help="EC P-256 private key (PEM) from `bushu keygen`")],
) -> None:
    """Sign a package (OpenSSF model-signing format, written to model.sig)."""
    from bushu.package.signing import sign_package

    out.print(f"signed {package} → {sign_package(package, key)}", highlight=False)


@app.command()
@user_errors
@cleans_up_on_sigterm
def encrypt(
    package: Annotated[Path, typer.Argument(help="package directory")],
    output: Annotated[Path, typer.Option("-o", "--output", help="encrypted package directory to write")],
    key_file: Annotated[Path | None, typer.Option(help="AES-256 key file (else $BUSHU_KEY)")] = None,
    force: Force = False,
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
@user_errors
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
