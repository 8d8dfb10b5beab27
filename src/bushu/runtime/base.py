"""The runtime contract: a `Backend` loads a package variant into a `Model` that infers on batches.

Input checking lives here, once, so that every backend — and the server above them — rejects
a wrong name, datatype or shape with the same clear message before any backend sees it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from bushu.errors import InvalidInput
from bushu.package.manifest import Manifest, TensorSpec
from bushu.runtime.dtypes import numpy_dtype, v2_datatype


#: Reads a package file by relative path, decrypted (see `package.files.PackageFiles.read`).
FileReader = Callable[[str], bytes]

#: Dynamic-axis names that name nothing: some exporters write `?` (or nothing) for every
#: dynamic dim, and such axes are independent of one another.
ANONYMOUS_DIMS = frozenset({"?", ""})


def disk_reader(package: Path) -> FileReader:
    """Reads files straight from `package`: for a package still being built (not hashed yet)."""
    return lambda rel: (package / rel).read_bytes()


def check_inputs(specs: Sequence[TensorSpec], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check names, datatypes and shapes against the manifest; return the arrays in spec order.

    Named dynamic axes must agree across inputs (every "batch" axis has one size).
    """
    expected = [s.name for s in specs]
    missing = [n for n in expected if n not in inputs]
    unknown = [n for n in inputs if n not in expected]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        raise InvalidInput(f"{'; '.join(parts)}; the model takes {expected}")
    checked: dict[str, np.ndarray] = {}
    axis_sizes: dict[str, tuple[int, str]] = {}
    for spec in specs:
        array = inputs[spec.name]
        if not isinstance(array, np.ndarray):
            raise InvalidInput(f"input {spec.name!r}: expected a numpy array, got {type(array).__name__}")
        want = numpy_dtype(spec.datatype)
        if array.dtype != want and not (spec.datatype == "BYTES" and array.dtype.kind in "OSU"):
            raise InvalidInput(
                f"input {spec.name!r}: expected datatype {spec.datatype}, got {v2_datatype_or_str(array.dtype)}"
            )
        if array.ndim != len(spec.shape) or any(
            want_dim != -1 and got != want_dim for want_dim, got in zip(spec.shape, array.shape)
        ):
            raise InvalidInput(
                f"input {spec.name!r}: expected shape {spec.shape} (-1 = any), got {list(array.shape)}"
            )
        for dim_name, got in zip(spec.dim_names(), array.shape):
            if dim_name is None or dim_name in ANONYMOUS_DIMS:
                continue
            if dim_name in axis_sizes and axis_sizes[dim_name][0] != got:
                size, other = axis_sizes[dim_name]
                raise InvalidInput(
                    f"axis {dim_name!r} is {got} in input {spec.name!r} but {size} in input {other!r}"
                )
            axis_sizes.setdefault(dim_name, (got, spec.name))
        checked[spec.name] = array
    return checked


def v2_datatype_or_str(dtype: np.dtype) -> str:
    try:
        return v2_datatype(dtype)
    except InvalidInput:
        return str(dtype)


class Model(ABC):
    """One loaded variant of a package, ready to infer on a batch."""

    def __init__(self, manifest: Manifest, variant: str, device: str) -> None:
        self.manifest = manifest
        self.variant = variant
        self.device = device
        self._output_names = [s.name for s in manifest.outputs]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.manifest.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.manifest.outputs

    def infer(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run one batch. `outputs` selects a subset of the outputs (all by default)."""
        arrays = check_inputs(self.manifest.inputs, inputs)
        wanted = list(outputs) if outputs is not None else self._output_names
        unknown = [n for n in wanted if n not in self._output_names]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model gives {self._output_names}")
        return self.run_checked(arrays, wanted)

    @abstractmethod
    def run_checked(self, arrays: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run inputs that `check_inputs` already accepted; return the named outputs."""

    def close(self) -> None:
        """Release what the backend holds; the default holds nothing that needs it."""

    def warm_up(self) -> None:
        """Run one small batch built from the manifest's input specs, so the first client does not
        pay for lazy initialisation (ONNX Runtime's and OpenVINO's first run allocates and plans)."""
        batch = {}
        for spec in self.manifest.inputs:  # every dynamic axis 1; zeros are in range for ids too
            shape = [1 if d == -1 else d for d in spec.shape]
            batch[spec.name] = (np.full(shape, b"", dtype=object) if spec.datatype == "BYTES"
                                else np.zeros(shape, dtype=numpy_dtype(spec.datatype)))
        self.infer(batch)


class Backend(Protocol):
    """Loads a variant of a package; one implementation per runtime.

    `read` gives a package file's plaintext by relative path, checked against its hash
    (`disk_reader` when none is given): the backend loads from those bytes, never from the
    file again, and never writes them to disk.
    """

    name: str

    def load(
        self, package: Path, manifest: Manifest, variant: str, device: str, read: FileReader | None = None
    ) -> Model: ...

