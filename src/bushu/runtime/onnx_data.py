"""ONNX files that keep their weights beside them (external data: `model.onnx` + `model.onnx.data`).

Exporters write a model's weights to separate files past protobuf's 2 GB limit, or when asked.
Those files are part of the model: they are packed, hashed and read through the package like
the graph, and a graph may only name data files beside it, inside the package.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np

from bushu.errors import PackageError
from bushu.runtime.base import FileReader


def _tensors_with_external_data(model: Any) -> list[Any]:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def _location(tensor: Any) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def data_file(model_file: str, location: str) -> str:
    """The package path of external data at `location` (relative to the graph's folder)."""
    parts = location.replace("\\", "/").split("/")
    if not location or location.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PackageError(f"{model_file}: external data {location!r} is not a file beside the model")
    return posixpath.join(posixpath.dirname(model_file), location)


def external_locations(model_bytes: bytes, model_file: str) -> list[str]:
    """The external-data locations a serialised ONNX graph names, in order, each once."""
    if b"location" not in model_bytes:  # the key every external-data entry carries
        return []
    import onnx

    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as exc:  # protobuf's DecodeError and others: not an ONNX graph
        raise PackageError(f"{model_file}: not a valid ONNX model ({type(exc).__name__})") from None
    locations = [_location(t) for t in _tensors_with_external_data(model)]
    for location in locations:
        data_file(model_file, location)
    return list(dict.fromkeys(locations))


def add_external_data(options: Any, model_bytes: bytes, model_file: str, read: FileReader) -> list[np.ndarray]:
    """Hand ONNX Runtime the graph's external data from memory; keep the returned buffers alive
    as long as the session."""
    locations = external_locations(model_bytes, model_file)
    buffers = [np.frombuffer(read(data_file(model_file, loc)), dtype=np.uint8) for loc in locations]
    if locations:
        options.add_external_initializers_from_files_in_memory(locations, buffers, [b.size for b in buffers])
    return buffers


def inline_external_data(model_bytes: bytes, model_file: str, read: FileReader) -> bytes:
    """The graph with its external data copied in (for runtimes that take one buffer, < 2 GB)."""
    if not external_locations(model_bytes, model_file):
        return model_bytes
    import onnx

    model = onnx.load_model_from_string(model_bytes)
    files: dict[str, bytes] = {}
    for tensor in _tensors_with_external_data(model):
        info = {e.key: e.value for e in tensor.external_data}
        rel = data_file(model_file, info["location"])
        data = files.setdefault(rel, read(rel))
        offset = int(info.get("offset", 0))
        length = int(info.get("length", len(data) - offset))
        if offset < 0 or length < 0 or offset + length > len(data):
            raise PackageError(f"{model_file}: tensor {tensor.name!r} lies outside {rel}")
        tensor.raw_data = data[offset: offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return model.SerializeToString()
