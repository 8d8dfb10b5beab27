"""V2 tensors in gRPC messages (KServe's `ModelInferRequest` / `ModelInferResponse`, as the
protobuf classes tritonclient ships define them) ↔ the codec's `InferRequest` and numpy arrays.

Inputs come either as `raw_input_contents` (one little-endian buffer per input, in input order,
BYTES elements each a uint32 length then the bytes: what tritonclient sends) or as typed
`contents` lists; outputs always go back as `raw_output_contents`, as Triton answers. Every
input is checked the way the HTTP codec checks it: known datatype, non-negative shape, exactly
as many values as the shape holds, values that fit the datatype.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from bushu.errors import InvalidInput
from bushu.runtime.dtypes import numpy_dtype, v2_datatype
from bushu.serve.codec import InferRequest, _bytes_elements, _bytes_payload

#: The `InferTensorContents` field each datatype's typed values travel in (FP16 and BF16: raw only).
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _from_raw(raw: bytes, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    if datatype == "BYTES":
        return _bytes_elements(raw, name)
    if len(raw) % dtype.itemsize:
        raise InvalidInput(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype} values")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)


def _from_contents(tensor: Any, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} values travel in raw_input_contents only")
    values = list(getattr(tensor.contents, field))
    if datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    wide = np.asarray(values, dtype=np.float64 if dtype.kind == "f" else np.int64 if dtype.kind == "i" else
                      np.uint64 if dtype.kind == "u" else np.bool_)
    with np.errstate(over="ignore", invalid="ignore"):
        array = wide.astype(dtype)
    if dtype.kind in "iu" and not np.array_equal(array.astype(wide.dtype), wide):
        raise InvalidInput(f"input {name!r}: a value does not fit {datatype}")
    if dtype.kind == "f" and not np.array_equal(np.isinf(array), np.isinf(wide)):
        raise InvalidInput(f"input {name!r}: a value does not fit {datatype}")
    return array


def decode_infer(request: Any) -> InferRequest:
    """A `ModelInferRequest` as the dataplane takes it."""
    if not request.inputs:
        raise InvalidInput("the request needs at least one input")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; "
                           "give one per input, in input order, or none")
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput("each input needs a name")
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears twice")
        dtype = numpy_dtype(tensor.datatype)
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(f"input {name!r}: shape {shape} must hold non-negative integers")
        array = (_from_raw(raw[i], tensor.datatype, dtype, name) if raw
                 else _from_contents(tensor, tensor.datatype, dtype, name))
        if array.size != prod(shape):
            raise InvalidInput(f"input {name!r}: {array.size} value(s) do not fill shape {shape} ({prod(shape)} values)")
        inputs[name] = array.reshape(shape)
    outputs = [o.name for o in request.outputs] or None
    return InferRequest(inputs, request.id or None, outputs)


def encode_infer(pb: Any, model_name: str, model_version: str, request_id: str | None,
                 outputs: dict[str, np.ndarray]) -> Any:
    """The `ModelInferResponse` (of the protobuf module `pb`) for the model's outputs."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id or "")
    for name, array in outputs.items():
        datatype = v2_datatype(array.dtype)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(
            _bytes_payload(array) if datatype == "BYTES"
            else np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return response
