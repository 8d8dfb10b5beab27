"""The Open Inference Protocol v2 wire format: JSON tensors and the binary tensor extension.

Decoding goes straight from the parse to numpy arrays — no pydantic models on the hot path, no
re-serialising whole tensors (the cost MLServer pays on every request); a JSON tensor's numbers
never become Python floats where they are plain numbers (`json_body`).
Binary extension (Triton `extension_binary_data.md`): the JSON header's length is in the
`Inference-Header-Content-Length` header; raw little-endian tensors follow in JSON order,
unpadded; BOOL is one byte; each BYTES element is a uint32 length then its bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np
import orjson

from bushu.errors import InvalidInput
from bushu.runtime.dtypes import numpy_dtype, v2_datatype
from bushu.serve import json_body

HEADER_LENGTH = "inference-header-content-length"


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    #: Requested outputs in order; None means all.
    outputs: list[str] | None = None
    #: Outputs to return as binary data (by name), and the request-wide default.
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _shape(tensor: dict[str, Any], name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    return shape


def _bytes_elements(raw: bytes | memoryview, name: str) -> np.ndarray:
    items: list[bytes] = []
    view = memoryview(raw)
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + length > len(view):
            raise InvalidInput(f"input {name!r}: BYTES element of {length} bytes runs past the data")
        items.append(bytes(view[pos : pos + length]))
        pos += length
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _from_json_data(data: Any, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    if datatype in json_body.NUMERIC:
        return json_body.numbers(data, datatype, dtype, name)
    flat = json_body.flatten(data)  # flat: nested lists of uneven lengths are the size check's
    if datatype == "BYTES":
        out = np.empty(len(flat), dtype=object)
        out[:] = [_to_bytes(v, name) for v in flat]
        return out
    if not all(isinstance(v, bool) for v in flat):  # BOOL, the one datatype left
        raise InvalidInput(f"input {name!r}: BOOL data must be true/false")
    return np.array(flat, dtype=dtype)


def _to_bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"input {name!r}: BYTES data must be strings, got {type(value).__name__}")
    return value.encode()


def decode_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """Parse a V2 infer request body (JSON, or JSON header + binary tensors)."""
    if header_length is not None:
        try:
            json_length = int(header_length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
        if not 0 < json_length <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {json_length} does not fit a body of {len(body)} bytes"
            )
        header, binary = body[:json_length], memoryview(body)[json_length:]
    else:
        header, binary = body, memoryview(b"")
    doc = _object(json_body.loads(header), "the request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the request needs a non-empty 'inputs' list")

    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        tensor = _object(raw, "each input")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("each input needs a 'name' string")
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears twice")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInput(f"input {name!r}: 'datatype' must be a string")
        dtype = numpy_dtype(datatype)
        shape = _shape(tensor, name)
        params = tensor.get("parameters") or {}
        size = _object(params, f"input {name!r} parameters").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input {name!r}: binary_data_size {size} runs past the {len(binary)} bytes of binary data"
                )
            chunk = binary[offset : offset + size]
            offset += size
            if datatype == "BYTES":
                array = _bytes_elements(chunk, name)
            else:
                if size % dtype.itemsize:
                    raise InvalidInput(f"input {name!r}: {size} bytes is not a whole number of {datatype} values")
                array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        elif "data" in tensor:
            array = _from_json_data(tensor["data"], datatype, dtype, name)
        else:
            raise InvalidInput(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
        if array.size != prod(shape):
            raise InvalidInput(
                f"input {name!r}: {array.size} value(s) do not fill shape {shape} ({prod(shape)} values)"
            )
        inputs[name] = array.reshape(shape)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} byte(s) of binary data are not claimed by any input")

    request_params = _object(doc.get("parameters") or {}, "the request parameters")
    binary_default = bool(request_params.get("binary_data_output", False))
    outputs: list[str] | None = None
    binary_outputs: set[str] = set()
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be a list")
        outputs = []
        for raw in raw_outputs:
            entry = _object(raw, "each requested output")
            name = entry.get("name")
            if not isinstance(name, str):
                raise InvalidInput("each requested output needs a 'name' string")
            outputs.append(name)
            out_params = _object(entry.get("parameters") or {}, f"output {name!r} parameters")
            if out_params.get("binary_data", binary_default):
                binary_outputs.add(name)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    return InferRequest(inputs, request_id, outputs, binary_outputs, binary_default)


def _bytes_payload(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _json_data(array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    if datatype == "BF16":
        flat = flat.astype(np.float32)
    return flat.tolist()


def encode_response(
    model_name: str, model_version: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """Encode a V2 response; returns (body, JSON header length when binary data follows)."""
    entries = []
    blobs: list[bytes] = []
    for name, array in outputs.items():
        datatype = v2_datatype(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = name in request.binary_outputs or (request.outputs is None and request.binary_default)
        if binary:
            blob = _bytes_payload(array) if datatype == "BYTES" else np.ascontiguousarray(
                array, dtype=array.dtype.newbyteorder("<")
            ).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array, datatype)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
