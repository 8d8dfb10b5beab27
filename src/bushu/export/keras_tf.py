"""Keras models (`.keras`, `.h5`) and TensorFlow SavedModel directories → verified ONNX.

The reference is TensorFlow itself: the Keras model called on the inputs (inference mode),
or the SavedModel's `serving_default` signature. Converters, in order: Keras's own ONNX
export (`model.export(format="onnx")`, which drives tf2onnx for Keras 3) and tf2onnx's
`from_keras`; for a SavedModel, tf2onnx on the frozen signature. Tensor names, layouts (NHWC
stays NHWC: the ONNX model takes what the source takes) and dynamic axes are the source's.
Keras files load with `safe_mode` on: a Lambda layer's pickled code is refused, never run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import InvalidInput, PackageError
from bushu.export.convert import Converter, Source
from bushu.package.manifest import TensorSpec
from bushu.runtime.dtypes import numpy_dtype, v2_datatype

OPSET = 17
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_saved_model(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


def import_tensorflow() -> Any:
    """TensorFlow, quietly (its C++ start-up log is noise here), or an install hint."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet():
            import tensorflow as tf
    except ImportError:
        raise InvalidInput("importing TensorFlow/Keras/TFLite models needs the tf extra: "
                           "pip install 'bushu[tf]'") from None
    return tf


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """TensorFlow, Keras and tf2onnx warn about their own deprecations on every call; not ours."""
    loggers = [logging.getLogger(n) for n in ("tensorflow", "tf2onnx", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def tensor_spec(name: str, shape: Any, dtype: Any) -> TensorSpec:
    """A spec from a TF shape (None where dynamic): axis 0 is `batch`, others `<name>_dim<i>`."""
    dims = list(shape)
    sizes = [-1 if d is None else int(d) for d in dims]
    names = [None if d is not None else ("batch" if i == 0 else f"{name}_dim{i}") for i, d in enumerate(dims)]
    return TensorSpec(name=name, datatype=v2_datatype(np.dtype(dtype)), shape=sizes,
                      dims=names if any(n is not None for n in names) else None)


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def keras_source(path: Path) -> tuple[Source, list[Converter]]:
    tf = import_tensorflow()
    import keras

    try:
        with quiet():
            model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # keras raises ValueError, OSError, TypeError... for a bad file
        raise PackageError(f"{path}: Keras cannot load it: {str(exc).splitlines()[0]}") from None
    inputs = [tensor_spec(t.name, t.shape, t.dtype) for t in model.inputs]
    outputs = [f"output_{i}" for i in range(len(model.outputs))] if len(model.outputs) > 1 else ["output"]
    if len(model.outputs) == 1 and getattr(model.layers[-1], "name", None):
        outputs = [model.layers[-1].name]

    def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = [arrays[s.name] for s in inputs]
        with quiet():
            result = model(feed if len(feed) > 1 else feed[0], training=False)
        flat = result if isinstance(result, (list, tuple)) else [result]
        return {name: _numpy(value) for name, value in zip(outputs, flat)}

    def keras_export(target: Path) -> None:
        # Keras exports only a model that has been called once (a loaded .h5 has not)
        run({s.name: np.zeros([1 if d == -1 else d for d in s.shape], dtype=numpy_dtype(s.datatype)) for s in inputs})
        with quiet():
            model.export(str(target), format="onnx", verbose=False)

    def tf2onnx_keras(target: Path) -> None:
        import tf2onnx

        signature = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
        with quiet():
            tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET, output_path=str(target))

    source = Source("keras", f"keras {keras.__version__} (tensorflow {tf.__version__})", inputs, outputs, run, [path])
    return source, [Converter("keras-export", keras_export), Converter("tf2onnx", tf2onnx_keras)]


def saved_model_source(path: Path) -> tuple[Source, list[Converter]]:
    tf = import_tensorflow()
    try:
        with quiet():
            loaded = tf.saved_model.load(str(path))
            signature = loaded.signatures["serving_default"]
    except KeyError:
        raise PackageError(f"{path}: the SavedModel has no 'serving_default' signature") from None
    except Exception as exc:  # tf raises its own error types for a bad directory
        raise PackageError(f"{path}: TensorFlow cannot load the SavedModel: {str(exc).splitlines()[0]}") from None
    specs = signature.structured_input_signature[1]
    inputs = [tensor_spec(name, spec.shape, spec.dtype.as_numpy_dtype) for name, spec in specs.items()]
    outputs = list(signature.structured_outputs)

    def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with quiet():
            result = signature(**{name: tf.constant(arrays[name]) for name in specs})
        return {name: _numpy(result[name]) for name in outputs}

    def tf2onnx_saved_model(target: Path) -> None:
        import tf2onnx
        from tf2onnx import tf_loader

        with quiet():
            graph_def, input_names, output_names, renames = tf_loader.from_saved_model(
                str(path), None, None, tag="serve", signatures=["serving_default"], return_tensors_to_rename=True)
            tf2onnx.convert.from_graph_def(graph_def, input_names=input_names, output_names=output_names,
                                           opset=OPSET, output_path=str(target), tensors_to_rename=renames)
        _order_outputs(target, outputs)

    files = sorted(p for p in path.rglob("*") if p.is_file())
    return Source("tensorflow", f"tensorflow {tf.__version__}", inputs, outputs, run, files), [Converter("tf2onnx", tf2onnx_saved_model)]


def _order_outputs(path: Path, names: list[str]) -> None:
    """Put the graph's outputs in the signature's order (tf2onnx orders them by tensor name)."""
    import onnx

    model = onnx.load(str(path))
    by_name = {o.name: o for o in model.graph.output}
    if set(by_name) != set(names):
        return  # left to verification, which names the difference
    ordered = [by_name[n] for n in names]
    del model.graph.output[:]
    model.graph.output.extend(ordered)
    onnx.save(model, str(path))
