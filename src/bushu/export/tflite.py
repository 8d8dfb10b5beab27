"""TFLite flatbuffers (`.tflite`) → verified ONNX.

The reference is the TFLite interpreter (`tf.lite.Interpreter`, which TensorFlow still ships
and deprecates in favour of LiteRT; bushu silences that notice only). The converter is
tf2onnx's TFLite path (`tf2onnx.convert.from_tflite`). A TFLite file is usually made for one
example (batch axis fixed at 1): `convert.convert_verified` then gives the ONNX model a dynamic
batch axis and checks every row against the interpreter.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from bushu.errors import PackageError
from bushu.export.convert import Converter, Source
from bushu.export.keras_tf import OPSET, import_tensorflow, quiet
from bushu.package.manifest import TensorSpec
from bushu.runtime.dtypes import v2_datatype


def is_tflite(path: Path) -> bool:
    """A TFLite flatbuffer carries the file identifier `TFL3` at bytes 4..8."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def _spec(detail: dict) -> TensorSpec:
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    name = detail["name"]
    dims = [None if d != -1 else ("batch" if i == 0 else f"{name}_dim{i}") for i, d in enumerate(signature)]
    return TensorSpec(name=name, datatype=v2_datatype(np.dtype(detail["dtype"])), shape=signature,
                      dims=dims if any(d is not None for d in dims) else None)


def tflite_source(path: Path) -> tuple[Source, list[Converter]]:
    tf = import_tensorflow()
    try:
        with quiet():
            # from bytes: that path runs the flatbuffer verifier (a truncated file from a path crashes)
            interpreter = tf.lite.Interpreter(model_content=path.read_bytes())
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise PackageError(f"{path}: the TFLite interpreter cannot load it: {str(exc).splitlines()[0]}") from None
    in_details = interpreter.get_input_details()
    out_details = interpreter.get_output_details()
    inputs = [_spec(d) for d in in_details]
    outputs = [d["name"] for d in out_details]
    lock = threading.Lock()  # one interpreter, one invocation at a time

    def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            for detail in interpreter.get_input_details():
                value = arrays[detail["name"]]
                if list(value.shape) != list(detail["shape"]):
                    interpreter.resize_tensor_input(detail["index"], list(value.shape))
                    interpreter.allocate_tensors()
                interpreter.set_tensor(detail["index"], value)
            interpreter.invoke()
            return {d["name"]: interpreter.get_tensor(d["index"]).copy() for d in out_details}

    def tf2onnx_tflite(target: Path) -> None:
        import tf2onnx

        with quiet():
            tf2onnx.convert.from_tflite(str(path), opset=OPSET, output_path=str(target))

    source = Source("tflite", f"tensorflow {tf.__version__} (tf.lite.Interpreter)", inputs, outputs, run, [path])
    return source, [Converter("tf2onnx-tflite", tf2onnx_tflite)]
