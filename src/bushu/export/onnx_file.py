"""Existing ONNX files: check them and read their input/output signature from the graph.

Third-party exporters name dynamic dims as they please: a real name (`batch`) is one axis
wherever it appears, while `?`, an empty name or no name at all says only "dynamic", so each
such dim becomes an axis of its own.
"""

from __future__ import annotations

from pathlib import Path

from bushu.errors import PackageError
from bushu.package.manifest import TensorSpec
from bushu.runtime.base import ANONYMOUS_DIMS
from bushu.runtime.dtypes import onnx_elem_to_v2


def _specs(values, initializers: set[str]) -> list[TensorSpec]:
    specs = []
    for value in values:
        if value.name in initializers:
            continue  # old exporters list weights as graph inputs
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise PackageError(f"ONNX value {value.name!r} is not a tensor; bushu serves tensors only")
        shape: list[int] = []
        dims: list[str | None] = []
        for i, dim in enumerate(tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
                dims.append(None)
            else:
                shape.append(-1)
                named = dim.dim_param if dim.dim_param not in ANONYMOUS_DIMS else ""
                dims.append(named or f"{value.name}_dim{i}")
        specs.append(
            TensorSpec(
                name=value.name,
                datatype=onnx_elem_to_v2(tensor_type.elem_type),
                shape=shape,
                dims=dims if any(d is not None for d in dims) else None,
            )
        )
    return specs


def onnx_signature(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Check the model with `onnx.checker` and return (inputs, outputs) as the graph states them."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise PackageError(f"{path}: not a valid ONNX model: {exc}") from None
    initializers = {init.name for init in model.graph.initializer}
    return _specs(model.graph.input, initializers), _specs(model.graph.output, set())


def external_data_files(path: Path) -> list[str]:
    """The files beside `path` that hold its external data, as locations relative to its folder."""
    from bushu.runtime.onnx_data import external_locations

    locations = external_locations(path.read_bytes(), path.name)
    for location in locations:
        data = path.parent / location
        if not data.is_file() or not data.resolve().is_relative_to(path.parent.resolve()):
            raise PackageError(f"{path}: its external data {location!r} is not a file beside it")
    return locations
