"""Other frameworks → ONNX, accepted only once the ONNX model computes what the source computed.

An importer (keras_tf, tflite, caffe) describes its source as a `Source`: the tensors it takes
as the source framework states them (names, NHWC or NCHW as they are, dynamic axes), the
output names, and a `run` that computes outputs with the source framework itself (TensorFlow,
the TFLite interpreter, OpenCV's Caffe reader) — the independent reference. It offers one or
more `Converter`s. Each converter's ONNX is run in ONNX Runtime on fresh random inputs at
several batch sizes and compared with `run`; the first within tolerance wins. When none fits,
the refusal names each converter and its error.

Sources whose batch axis is fixed at 1 (TFLite and Caffe files usually are) get a dynamic batch
axis in ONNX where the graph allows it (a Reshape that pins the batch to 1 copies it instead),
so the server can batch them; the source is then run one row at a time to check every row.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bushu.errors import ExportError
from bushu.export.compare import relative_error
from bushu.export.onnx_file import onnx_signature
from bushu.export.specs import random_inputs
from bushu.export.torch_onnx import DEFAULT_TOLERANCE, ExportResult, _root_cause, _verification_sizes
from bushu.package.manifest import TensorSpec

Arrays = dict[str, np.ndarray]


@dataclass
class Source:
    """A model in its own framework, with an independent way to run it."""

    framework: str
    framework_version: str
    inputs: list[TensorSpec]
    output_names: list[str]
    run: Callable[[Arrays], Arrays]
    #: Files the source consists of (hashed into the manifest's provenance).
    files: list[Path] = field(default_factory=list)
    value_ranges: Mapping[str, tuple[float, float]] | None = None


@dataclass
class Converter:
    name: str
    #: Writes the ONNX model for the source to the path it is given.
    convert: Callable[[Path], None]


def fixed_batch(specs: Sequence[TensorSpec]) -> bool:
    """True when every input's first axis is pinned to 1 (a file exported for one example)."""
    return all(s.shape[:1] == [1] for s in specs)


def with_batch_axis(specs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """The specs with their first axis dynamic and named `batch`."""
    return [
        TensorSpec(name=s.name, datatype=s.datatype, shape=[-1, *s.shape[1:]],
                   dims=["batch", *s.dim_names()[1:]])
        for s in specs
    ]


def row_by_row(run: Callable[[Arrays], Arrays]) -> Callable[[Arrays], Arrays]:
    """Run a batch-1 source on each row of a batch and stack the answers."""

    def batched(arrays: Arrays) -> Arrays:
        rows = len(next(iter(arrays.values())))
        answers = [run({k: v[i : i + 1] for k, v in arrays.items()}) for i in range(rows)]
        return {k: np.concatenate([a[k] for a in answers]) for k in answers[0]}

    return batched


def make_batch_dynamic(path: Path) -> bool:
    """Give the ONNX graph at `path` a dynamic batch axis; False when it cannot be done safely.

    Reshapes whose constant target shape starts with the fixed batch size 1 copy the input's
    first axis instead (ONNX's 0), graph inputs and outputs name axis 0 `batch`, and stale
    shape annotations are dropped. Verification at several batch sizes is what proves it.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        target = constants.get(node.input[1])
        if target is None:
            return False  # a computed shape: leave the graph as it is
        shape = numpy_helper.to_array(target)
        if shape.size and shape[0] == 1:
            shape = shape.copy()
            shape[0] = 0
            target.CopyFrom(numpy_helper.from_array(shape, target.name))
    initializers = {init.name for init in graph.initializer}
    for value in [*(i for i in graph.input if i.name not in initializers), *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_value not in (0, 1):
            return False
        dims[0].Clear()
        dims[0].dim_param = "batch"
    del graph.value_info[:]
    onnx.save(model, str(path))
    return True


def rename_io(path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Name the graph's inputs and outputs as the source does, in order (converters invent names
    like `Identity:0`, or call every input `input`)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    graph_inputs = [i for i in graph.input if i.name not in initializers]
    for kind, values, names in (("inputs", graph_inputs, inputs), ("outputs", graph.output, outputs)):
        if len(values) != len(names):
            raise ExportError(f"the converted model has {len(values)} {kind}, the source {len(names)}")
    mapping = {v.name: new for v, new in zip([*graph_inputs, *graph.output], [*inputs, *outputs]) if v.name != new}
    if not mapping:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = mapping.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = mapping.get(name, name)
    for value in [*graph_inputs, *graph.output, *graph.value_info]:
        value.name = mapping.get(value.name, value.name)
    onnx.save(model, str(path))


def _measure(source: Source, specs: Sequence[TensorSpec], run: Callable[[Arrays], Arrays], path: Path,
             tolerance: float, seed: int) -> tuple[dict[str, float], str | None]:
    import onnxruntime as ort

    from bushu.runtime.onnxruntime import session_options

    worst = dict.fromkeys(source.output_names, 0.0)
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # a converter can write a graph onnxruntime rejects
        return worst, f"onnxruntime cannot load the converted model: {str(exc).splitlines()[0]}"
    got_inputs = sorted(i.name for i in session.get_inputs())
    if got_inputs != sorted(s.name for s in specs):
        return worst, f"the converted model takes {got_inputs}, the source {[s.name for s in specs]}"
    rng = np.random.default_rng(seed)
    for sizes in _verification_sizes(specs):
        arrays = random_inputs(specs, sizes, rng, source.value_ranges)
        shapes = ", ".join(f"{k}={list(v.shape)}" for k, v in arrays.items())
        want = run(arrays)
        try:
            got = dict(zip(source.output_names, session.run(source.output_names, arrays)))
        except Exception as exc:  # onnxruntime's own types; a failing run is a miss
            return worst, f"the converted model fails at inputs {shapes}: {str(exc).splitlines()[0]}"
        for name in source.output_names:
            err = relative_error(got[name], np.asarray(want[name]))
            worst[name] = max(worst[name], err)
            if err > tolerance:
                what = (f"shape {list(got[name].shape)} where the source gives {list(want[name].shape)}"
                        if got[name].shape != want[name].shape
                        else f"max relative error {err:.3g} exceeds tolerance {tolerance:g}")
                return worst, f"output {name!r} at inputs {shapes}: {what}"
    return worst, None


def _batch_first(outputs: Sequence[TensorSpec], inputs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """Call a dynamic first output axis `batch` when the inputs have one (converters say `unk__3`)."""
    if not any(s.dim_names()[:1] == ["batch"] for s in inputs):
        return list(outputs)
    return [
        TensorSpec(name=o.name, datatype=o.datatype, shape=o.shape, dims=["batch", *o.dim_names()[1:]])
        if o.shape[:1] == [-1] else o
        for o in outputs
    ]


def convert_verified(source: Source, converters: Sequence[Converter], path: Path, *,
                     tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> ExportResult:
    """Write the first converter's ONNX that reproduces `source` to `path`; see the module docstring."""
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bushu-convert-") as tmp:
        for converter in converters:
            candidate = Path(tmp) / converter.name / "model.onnx"
            candidate.parent.mkdir(parents=True)
            try:
                with warnings.catch_warnings():  # converters warn about their own internals
                    warnings.simplefilter("ignore")
                    converter.convert(candidate)
                rename_io(candidate, [s.name for s in source.inputs], source.output_names)
            except Exception as exc:  # converters raise many types; the message is what matters
                failures.append(f"{converter.name}: conversion failed: {_root_cause(exc)}")
                continue
            tries: list[tuple[list[TensorSpec], Callable[[Arrays], Arrays], str]] = []
            if fixed_batch(source.inputs):
                dynamic = candidate.with_name("dynamic.onnx")
                shutil.copyfile(candidate, dynamic)
                try:
                    made = make_batch_dynamic(dynamic)
                except Exception:  # an unusual graph: keep the batch as the source fixed it
                    made = False
                if made:
                    tries.append((with_batch_axis(source.inputs), row_by_row(source.run), "dynamic"))
            tries.append((list(source.inputs), source.run, "static"))
            dynamic_miss: str | None = None
            for specs, run, kind in tries:
                file = candidate.with_name("dynamic.onnx") if kind == "dynamic" else candidate
                worst, miss = _measure(source, specs, run, file, tolerance, seed)
                if miss is None:
                    _, outputs = onnx_signature(file)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(file), path)
                    notes = ["batch axis made dynamic"] if kind == "dynamic" else (
                        [f"batch fixed at 1 as in the source (a dynamic batch did not verify: {dynamic_miss})"]
                        if dynamic_miss else [])
                    return ExportResult(converter.name, worst, list(specs), _batch_first(outputs, specs), notes)
                if kind == "dynamic":
                    dynamic_miss = miss
                failures.append(f"{converter.name}{' (dynamic batch)' if kind == 'dynamic' else ''}: {miss}")
    raise ExportError(
        f"import refused: no converter reproduced the {source.framework} model\n  " + "\n  ".join(failures)
    )
