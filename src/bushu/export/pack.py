"""Make packages: a verified export of a PyTorch module, or an existing ONNX file as it is."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bushu
from bushu.errors import InvalidInput, NotFound
from bushu.export.onnx_file import external_data_files, onnx_signature
from bushu.export.torch_onnx import DEFAULT_TOLERANCE, EXPORTERS, export_module
from bushu.package.manifest import MANIFEST_NAME, Manifest, Provenance, Step, TensorSpec, Variant
from bushu.package.store import hash_files, sha256_file, staged_package, write_manifest

MODEL_FILE = "model.onnx"
#: The source module's weights, kept so the package can be fine-tuned, pruned or run in PyTorch.
WEIGHTS_FILE = "source/weights.safetensors"
DEFAULT_VARIANT = "onnx-fp32"


def pack_onnx(
    source: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    version: str = "1",
    task: str = "generic",
    labels: Sequence[str] | None = None,
    force: bool = False,
) -> Manifest:
    """Package an existing ONNX file unchanged, with any external data files it names; its
    signature is read from the graph."""
    src = Path(source)
    if not src.is_file():
        raise NotFound(f"{src}: no such ONNX file")
    inputs, outputs = onnx_signature(src)
    data_files = external_data_files(src)
    clash = [f for f in data_files if f in (MODEL_FILE, MANIFEST_NAME)]
    if clash:
        raise InvalidInput(f"{src}: its external data file {clash[0]!r} would clash with the package's own files")
    with staged_package(out, force=force) as staging:
        shutil.copyfile(src, staging / MODEL_FILE)
        for location in data_files:  # beside the graph, where its locations point
            (staging / location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src.parent / location, staging / location)
        manifest = Manifest(
            name=name or _name_from(src.stem),
            version=version,
            task=task,
            framework="onnx",
            inputs=inputs,
            outputs=outputs,
            labels=list(labels) if labels else None,
            variants={DEFAULT_VARIANT: Variant(file=MODEL_FILE)},
            default_variant=DEFAULT_VARIANT,
            provenance=Provenance(
                bushu_version=bushu.__version__, source=str(src), source_sha256=sha256_file(src)
            ),
            files=hash_files(staging),
        )
        return write_manifest(staging, manifest)


def pack_module(
    module: Any,
    inputs: Sequence[TensorSpec],
    out: str | Path,
    *,
    name: str,
    version: str = "1",
    task: str = "generic",
    output_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    preprocessing: Sequence[Step] = (),
    postprocessing: Sequence[Step] = (),
    metrics: Mapping[str, float] | None = None,
    source: str = "",
    source_kwargs: Mapping[str, Any] | None = None,
    source_sha256: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    value_ranges: Mapping[str, tuple[float, float]] | None = None,
    extra_files: Mapping[str, bytes | Path] | None = None,
    exporters: Sequence[str] = EXPORTERS,
    force: bool = False,
) -> Manifest:
    """Export `module` to ONNX, verify it against the module, and package it with its error.

    The module's weights travel too, as safetensors, and `source` names its class
    (`module:Class`, with the constructor's `source_kwargs`), so later steps — the PyTorch
    backend, pruning — can rebuild the exact source model. `extra_files`
    (relative path → bytes, or a file to copy) are data the processing steps read, e.g. a
    tokenizer; they are written before hashing, so the manifest covers them like every file.
    """
    from safetensors.torch import save_model

    with staged_package(out, force=force) as staging:
        for rel, data in (extra_files or {}).items():
            target = staging / rel
            if not _is_inside(staging, target) or rel in (MODEL_FILE, WEIGHTS_FILE, MANIFEST_NAME):
                raise InvalidInput(f"extra file {rel!r} must be a new relative path inside the package")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                shutil.copyfile(data, target)
            else:
                target.write_bytes(data)
        (staging / WEIGHTS_FILE).parent.mkdir(exist_ok=True)
        save_model(module, str(staging / WEIGHTS_FILE))
        result = export_module(
            module, inputs, staging / MODEL_FILE, output_names=output_names,
            tolerance=tolerance, value_ranges=value_ranges, exporters=exporters,
        )
        manifest = Manifest(
            name=name,
            version=version,
            task=task,
            framework="pytorch",
            inputs=result.inputs,
            outputs=result.outputs,
            labels=list(labels) if labels else None,
            preprocessing=list(preprocessing),
            postprocessing=list(postprocessing),
            variants={
                DEFAULT_VARIANT: Variant(
                    file=MODEL_FILE,
                    max_rel_error=result.max_rel_error,
                    notes=f"exported with the {result.exporter} exporter; verified within {tolerance:g}",
                )
            },
            default_variant=DEFAULT_VARIANT,
            metrics=dict(metrics or {}),
            provenance=Provenance(
                bushu_version=bushu.__version__, source=source, source_kwargs=dict(source_kwargs or {}), source_sha256=source_sha256,
                exporter=result.exporter, weights_file=WEIGHTS_FILE,
            ),
            files=hash_files(staging),
        )
        return write_manifest(staging, manifest)


def framework_of(path: Path) -> str | None:
    """What a path holds, by its contents and name: onnx, keras, tensorflow (a SavedModel),
    tflite, caffe — or None (a PyTorch `module:Class`, a transformers directory, nothing)."""
    from bushu.export.caffe import is_caffe
    from bushu.export.keras_tf import KERAS_SUFFIXES, is_saved_model
    from bushu.export.tflite import is_tflite

    if is_saved_model(path):
        return "tensorflow"
    if not path.is_file():
        return None
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in KERAS_SUFFIXES:
        return "keras"
    if is_tflite(path):
        return "tflite"
    if is_caffe(path):
        return "caffe"
    return None


def _is_inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve()) and path.resolve() != root.resolve()


def _name_from(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem).strip("-._")
    return cleaned or "model"
