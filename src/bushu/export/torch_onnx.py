"""PyTorch `nn.Module` → ONNX, accepted only once it computes what the module computed.

The dynamo exporter (torch.export) is tried first and the TorchScript tracer second. Each
candidate is run in ONNX Runtime on fresh random inputs at several batch sizes (and lengths
of the other dynamic axes) and compared with the module's own outputs; the first within
tolerance wins and its worst error per output is returned for the manifest. When none fits,
the error names the output, the input shapes and the error, per exporter.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import ExportError, InvalidInput
from bushu.export.compare import relative_error
from bushu.export.onnx_file import onnx_signature
from bushu.export.specs import dynamic_dims, random_inputs
from bushu.package.manifest import TensorSpec

EXPORTERS = ("dynamo", "torchscript")
BATCH_SIZES = (1, 3, 8)
LENGTHS = (5, 17)
DEFAULT_TOLERANCE = 1e-4
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ExportResult:
    exporter: str
    max_rel_error: dict[str, float]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _quiet(captured: list[str]) -> Iterator[None]:
    """Silence the exporters' log chatter; keep the tracer's warnings to explain a mismatch."""
    loggers = [logging.getLogger(n) for n in ("torch", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    sink = io.StringIO()  # the dynamo exporter prints graphs when export fails
    try:
        with warnings.catch_warnings(record=True) as seen, contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            warnings.simplefilter("always")
            yield
        captured.extend(
            str(w.message).splitlines()[0] for w in seen if type(w.message).__name__ == "TracerWarning"
        )
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _verification_sizes(specs: Sequence[TensorSpec]) -> list[dict[str, int]]:
    names = dynamic_dims(specs)
    batch = [{"batch": b} for b in BATCH_SIZES] if "batch" in names else [{}]
    others = [n for n in names if n != "batch"]
    lengths = [{n: length for n in others} for length in LENGTHS] if others else [{}]
    grid = [{**b, **length} for b, length in itertools.product(batch, lengths)]
    return grid if len(grid) >= 3 else grid * (3 // len(grid))


def _example_sizes(specs: Sequence[TensorSpec]) -> dict[str, int]:
    # Neither 0 nor 1 (torch.export specialises those) and distinct per axis.
    return {name: 2 + 5 * i for i, name in enumerate(dynamic_dims(specs))}


def _flatten(result: Any) -> list[Any]:
    if isinstance(result, Mapping):
        return list(result.values())
    if isinstance(result, (tuple, list)):
        return list(result)
    return [result]


def _output_names(module: Any, example: Sequence[Any], given: Sequence[str] | None) -> list[str]:
    """Run the module once on the example: it must accept the specs, and its outputs get names."""
    import torch

    try:
        with torch.no_grad():
            result = module(*example)
    except Exception as exc:  # whatever the user's forward raises
        shapes = ", ".join(str(list(t.shape)) for t in example)
        raise InvalidInput(
            f"the module fails on example inputs of shape {shapes} made from the input specs: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    flat = _flatten(result)
    if given:
        if len(given) != len(flat):
            raise InvalidInput(f"{len(given)} output name(s) given but the module returns {len(flat)} output(s)")
        return list(given)
    if isinstance(result, Mapping):
        return [str(k) for k in result]
    return ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]


def _torch_outputs(module: Any, arrays: dict[str, np.ndarray], specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        result = module(*(torch.from_numpy(arrays[s.name]) for s in specs))
    return [t.detach().cpu().numpy() for t in _flatten(result)]


def _export(
    module: Any, exporter: str, specs: Sequence[TensorSpec], output_names: list[str], example, path: Path
) -> None:
    import torch

    input_names = [s.name for s in specs]
    if exporter == "dynamo":
        dims = {name: torch.export.Dim(name.replace(".", "_")) for name in dynamic_dims(specs)}
        dynamic_shapes = tuple(
            {axis: dims[d] for axis, d in enumerate(s.dim_names()) if d is not None} or None for s in specs
        )
        program = torch.onnx.export(
            module, tuple(example), None, dynamo=True, input_names=input_names,
            output_names=output_names, dynamic_shapes=dynamic_shapes, verbose=False,
        )
        program.save(str(path))
    else:
        dynamic_axes = {
            s.name: {axis: d for axis, d in enumerate(s.dim_names()) if d is not None} for s in specs
        }
        if "batch" in dynamic_dims(specs):  # outputs are batch-first, like the inputs
            dynamic_axes.update({name: {0: "batch"} for name in output_names})
        torch.onnx.export(
            module, tuple(example), str(path), dynamo=False, input_names=input_names,
            output_names=output_names, dynamic_axes=dynamic_axes,
        )


def _measure(
    module: Any, path: Path, specs: Sequence[TensorSpec], output_names: list[str], tolerance: float,
    value_ranges: Mapping[str, tuple[float, float]] | None, seed: int,
) -> tuple[dict[str, float], str | None]:
    """Worst relative error per output over the verification grid, and the first miss, if any."""
    import onnxruntime as ort

    from bushu.runtime.onnxruntime import session_options

    worst = dict.fromkeys(output_names, 0.0)
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # an exporter can write a graph onnxruntime rejects
        return worst, f"onnxruntime cannot load the exported model: {str(exc).splitlines()[0]}"
    rng = np.random.default_rng(seed)
    miss: str | None = None
    for sizes in _verification_sizes(specs):
        arrays = random_inputs(specs, sizes, rng, value_ranges)
        want = _torch_outputs(module, arrays, specs)
        shapes = ", ".join(f"{k}={list(v.shape)}" for k, v in arrays.items())
        try:
            got = session.run(output_names, arrays)
        except Exception as exc:  # onnxruntime raises its own types; a failing run is a miss
            return worst, f"the exported model fails at inputs {shapes}: {str(exc).splitlines()[0]}"
        if len(want) != len(got):
            return worst, f"the module returned {len(want)} outputs, the ONNX model {len(got)}"
        for name, g, w in zip(output_names, got, want):
            err = relative_error(g, w)
            worst[name] = max(worst[name], err)
            if err > tolerance and miss is None:
                what = (
                    f"shape {list(g.shape)} where the module gives {list(w.shape)}"
                    if g.shape != w.shape
                    else f"max relative error {err:.3g} exceeds tolerance {tolerance:g}"
                )
                miss = f"output {name!r} at inputs {shapes}: {what}"
    return worst, miss


def export_module(
    module: Any,
    inputs: Sequence[TensorSpec],
    path: Path,
    *,
    output_names: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    value_ranges: Mapping[str, tuple[float, float]] | None = None,
    exporters: Sequence[str] = EXPORTERS,
    seed: int = 0,
) -> ExportResult:
    """Export `module` to `path` as ONNX and verify it against the module; see the module docstring."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise InvalidInput(f"expected a torch.nn.Module, got {type(module).__name__}")
    unknown = [e for e in exporters if e not in EXPORTERS]
    if unknown:
        raise InvalidInput(f"unknown exporter(s) {unknown}; choose from {list(EXPORTERS)}")
    module = module.eval()
    specs = list(inputs)
    example_arrays = random_inputs(specs, _example_sizes(specs), np.random.default_rng(seed + 1), value_ranges)
    example = [torch.from_numpy(example_arrays[s.name]) for s in specs]
    names = _output_names(module, example, output_names)

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bushu-export-") as tmp:
        for exporter in exporters:
            candidate = Path(tmp) / exporter / "model.onnx"
            candidate.parent.mkdir()
            notes: list[str] = []
            try:
                with _quiet(notes):
                    _export(module, exporter, specs, names, example, candidate)
            except Exception as exc:  # exporters raise many types; the message is what matters
                failures.append(f"{exporter}: export failed: {_root_cause(exc)}")
                continue
            worst, miss = _measure(module, candidate, specs, names, tolerance, value_ranges, seed)
            if miss is None:
                candidate_inputs, candidate_outputs = onnx_signature(candidate)
                path.parent.mkdir(parents=True, exist_ok=True)
                candidate.replace(path)
                for extra in candidate.parent.iterdir():  # external weight files, if any
                    extra.replace(path.parent / extra.name)
                return ExportResult(exporter, worst, _keep_names(specs, candidate_inputs), candidate_outputs, notes)
            hint = f" (tracer warned: {notes[0]})" if notes else ""
            failures.append(f"{exporter}: {miss}{hint}")
    raise ExportError(
        "export refused: no exporter reproduced the source model\n  " + "\n  ".join(failures)
    )


def _keep_names(requested: Sequence[TensorSpec], exported: Sequence[TensorSpec]) -> list[TensorSpec]:
    """The user's input specs, unless the exporter dropped an input the module ignores."""
    kept = {s.name for s in exported}
    return [s for s in requested if s.name in kept]


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's first line: 'Could not guard on data-dependent expression…'."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {_ANSI.sub('', first)}"
