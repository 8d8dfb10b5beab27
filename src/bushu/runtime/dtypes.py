"""V2 datatype names ↔ numpy dtypes ↔ ONNX element types: one table, used everywhere."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from bushu.errors import InvalidInput

_V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "BYTES": np.dtype(np.object_),
}
_NUMPY_TO_V2 = {dt: name for name, dt in _V2_TO_NUMPY.items()}

# onnx.TensorProto element types (numbers kept literal so this module does not import onnx).
_ONNX_TO_V2 = {
    1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
    8: "BYTES", 9: "BOOL", 10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64", 16: "BF16",
}


def numpy_dtype(datatype: str) -> np.dtype:
    try:
        return _V2_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidInput(f"unknown datatype {datatype!r}; expected one of {', '.join(_V2_TO_NUMPY)}") from None


def v2_datatype(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in "SU":
        return "BYTES"
    try:
        return _NUMPY_TO_V2[dtype]
    except KeyError:
        raise InvalidInput(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


def onnx_elem_to_v2(elem_type: int) -> str:
    try:
        return _ONNX_TO_V2[elem_type]
    except KeyError:
        raise InvalidInput(f"ONNX element type {elem_type} has no Open Inference Protocol datatype") from None
