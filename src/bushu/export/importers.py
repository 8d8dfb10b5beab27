"""Package a model from another framework: Keras, TensorFlow SavedModel, TFLite or Caffe.

`pack_imported` finds the framework by what the path holds (`export.pack.framework_of`),
converts it to ONNX verified against the source framework's own run (`export.convert`), and
writes a package whose manifest names the framework, its version, the converter that won and
the error it was verified at, per output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bushu
from bushu.errors import InvalidInput
from bushu.export.convert import Converter, Source, convert_verified
from bushu.export.torch_onnx import DEFAULT_TOLERANCE
from bushu.package.manifest import Manifest, Provenance, Step, Variant
from bushu.package.store import hash_files, sha256_file, staged_package, write_manifest

MODEL_FILE = "model.onnx"
DEFAULT_VARIANT = "onnx-fp32"
FRAMEWORKS = ("keras", "tensorflow", "tflite", "caffe")


def load_source(path: Path, framework: str, weights: Path | None = None) -> tuple[Source, list[Converter]]:
    """The source model with its reference run, and the converters to try, for `framework`."""
    if framework == "keras":
        from bushu.export.keras_tf import keras_source

        return keras_source(path)
    if framework == "tensorflow":
        from bushu.export.keras_tf import saved_model_source

        return saved_model_source(path)
    if framework == "tflite":
        from bushu.export.tflite import tflite_source

        return tflite_source(path)
    if framework == "caffe":
        from bushu.export.caffe import caffe_files, caffe_source

        return caffe_source(*caffe_files(path, weights))
    raise InvalidInput(f"unknown framework {framework!r}; bushu imports {', '.join(FRAMEWORKS)}")


def pack_imported(
    source: str | Path,
    out: str | Path,
    *,
    framework: str | None = None,
    weights: Path | None = None,
    name: str | None = None,
    version: str = "1",
    task: str = "generic",
    labels: Sequence[str] | None = None,
    preprocessing: Sequence[Step] = (),
    postprocessing: Sequence[Step] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> Manifest:
    """Convert, verify and package the model at `source`; see the module docstring."""
    from bushu.export.pack import _name_from, framework_of

    path = Path(source)
    framework = framework or framework_of(path)
    if framework not in FRAMEWORKS:
        raise InvalidInput(f"{path}: not a Keras, SavedModel, TFLite or Caffe model")
    model, converters = load_source(path, framework, weights)
    with staged_package(out, force=force) as staging:
        result = convert_verified(model, converters, staging / MODEL_FILE, tolerance=tolerance)
        notes = f"converted with {result.exporter}; verified against {model.framework} within {tolerance:g}"
        manifest = Manifest(
            name=name or _name_from(path.stem if path.is_file() else path.name),
            version=version,
            task=task,
            framework=model.framework,
            inputs=result.inputs,
            outputs=result.outputs,
            labels=list(labels) if labels else None,
            preprocessing=list(preprocessing),
            postprocessing=list(postprocessing),
            variants={DEFAULT_VARIANT: Variant(
                file=MODEL_FILE, max_rel_error=result.max_rel_error,
                notes=notes + "".join(f"; {w}" for w in result.warnings))},
            default_variant=DEFAULT_VARIANT,
            provenance=Provenance(
                bushu_version=bushu.__version__, source=str(path), framework_version=model.framework_version,
                source_sha256=sha256_file(model.files[0]) if model.files else None, exporter=result.exporter,
            ),
            files=hash_files(staging),
        )
        return write_manifest(staging, manifest)
