"""Tensor specs as users type them, and random tensors that fit a spec for verification."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from bushu.errors import InvalidInput
from bushu.package.manifest import V2_DATATYPES, TensorSpec
from bushu.runtime.dtypes import numpy_dtype

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_input_spec(text: str) -> TensorSpec:
    """Parse `NAME:DTYPE:SHAPE`, e.g. `image:FP32:-1,3,32,32` or `ids:INT64:batch,sequence`.

    SHAPE separates axes with `,` or `x`; an axis is a size, `-1`, or a name (a dynamic axis
    with that name). An unnamed -1 is called `batch` on axis 0 and `dim<i>` elsewhere, so the
    same axis position in two inputs is the same dynamic axis.
    """
    parts = text.split(":")
    if len(parts) != 3:
        raise InvalidInput(f"input spec {text!r}: expected NAME:DTYPE:SHAPE, e.g. image:FP32:-1,3,32,32")
    name, datatype, shape_text = (p.strip() for p in parts)
    if not _NAME.match(name):
        raise InvalidInput(f"input spec {text!r}: {name!r} is not a valid tensor name")
    datatype = datatype.upper()
    if datatype not in V2_DATATYPES:
        raise InvalidInput(f"input spec {text!r}: unknown datatype {datatype!r}; use one of {', '.join(V2_DATATYPES)}")
    axes = [a.strip() for a in re.split(r"[,x]", shape_text.strip("[]() ")) if a.strip()]
    if not axes:
        raise InvalidInput(f"input spec {text!r}: the shape has no axes")
    shape: list[int] = []
    dims: list[str | None] = []
    for i, axis in enumerate(axes):
        if re.fullmatch(r"-1|\?", axis):
            shape.append(-1)
            dims.append("batch" if i == 0 else f"dim{i}")
        elif axis.isdigit() and int(axis) > 0:
            shape.append(int(axis))
            dims.append(None)
        elif _NAME.match(axis):
            shape.append(-1)
            dims.append(axis)
        else:
            raise InvalidInput(f"input spec {text!r}: axis {axis!r} is neither a positive size, -1, nor a name")
    return TensorSpec(name=name, datatype=datatype, shape=shape, dims=dims)


def dynamic_dims(specs: Sequence[TensorSpec]) -> list[str]:
    """The distinct dynamic axis names across `specs`, batch first."""
    names: list[str] = []
    for spec in specs:
        for dim in spec.dim_names():
            if dim is not None and dim not in names:
                names.append(dim)
    return sorted(names, key=lambda n: n != "batch")


def concrete_shape(spec: TensorSpec, sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(sizes[d] if d is not None else s for s, d in zip(spec.shape, spec.dim_names()))


def random_inputs(
    specs: Sequence[TensorSpec],
    sizes: Mapping[str, int],
    rng: np.random.Generator,
    value_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Fresh random tensors for every input; integers fall in [low, high) (default [0, 10))."""
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec, sizes)
        dtype = numpy_dtype(spec.datatype)
        low, high = (value_ranges or {}).get(spec.name, (None, None))
        if spec.datatype == "BOOL":
            out[spec.name] = rng.random(shape) < 0.5
        elif dtype.kind in "iu":
            out[spec.name] = rng.integers(int(low or 0), int(high or 10), size=shape).astype(dtype)
        elif dtype.kind == "f" or spec.datatype == "BF16":
            if low is None:
                values = rng.standard_normal(shape)
            else:
                values = rng.uniform(low, high, size=shape)
            out[spec.name] = values.astype(dtype)
        else:
            raise InvalidInput(f"input {spec.name!r}: cannot make random {spec.datatype} tensors to verify with")
    return out
