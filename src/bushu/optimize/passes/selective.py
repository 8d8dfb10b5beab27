"""Selective int8: when full int8 breaks the budget, return the most sensitive ops to float.

Sensitivity is measured per matrix product (MatMul, Gemm) on calibration data, never the eval
data: the op's inputs are captured from the fp32 model, and the op is recomputed with its
activation quantised (uint8, per tensor) and its weight quantised (int8, per output channel);
the relative error that this alone introduces ranks the ops. Then 1, 2, 4, … of the most
sensitive ops are excluded from quantisation until the calibration error fits the budget
(with a margin, since the eval set is other samples). ONNX node names are also the op names
OpenVINO gives an imported ONNX model, so one ranking serves ORT and NNCF alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, attempt
from bushu.optimize.passes.openvino import NNCF, nncf_int8, with_bf16
from bushu.optimize.passes.ort import dynamic_int8

#: Fraction of the allowed error the calibration error may use: eval samples differ.
MARGIN = 0.5
_SENSITIVITY_SAMPLES = 32


def _fake_quant_activation(x: np.ndarray) -> np.ndarray:
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = max(high - low, 1e-12) / 255
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_weight(w: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(w).max(axis=0, keepdims=True), 1e-12) / 127
    return np.clip(np.round(w / scale), -127, 127) * scale


def sensitivity(ctx: BuildContext, source: str) -> dict[str, float]:
    """Relative output error each MatMul/Gemm introduces alone when quantised (see module doc)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(ctx.staging / source))
    graph = model.graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.name]
    present = {o.name for o in graph.output}
    wanted = sorted({i for n in nodes for i in n.input[:2] if i not in weights} - present)
    graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in wanted)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    sample = ctx.calibration.batch(min(_SENSITIVITY_SAMPLES, len(ctx.calibration)))
    values = dict(zip(names, session.run(names, sample)))
    scores: dict[str, float] = {}
    for node in nodes:
        a = values.get(node.input[0], weights.get(node.input[0]))
        b = weights.get(node.input[1], values.get(node.input[1]))
        if a is None or b is None or a.dtype != np.float32:
            continue
        attrs = {att.name: helper.get_attribute_value(att) for att in node.attribute}
        if attrs.get("transA"):
            a = a.T
        if attrs.get("transB"):
            b = b.T
        exact = np.matmul(a, b)
        qb = _fake_quant_weight(b) if node.input[1] in weights and b.ndim == 2 else _fake_quant_activation(b)
        approx = np.matmul(_fake_quant_activation(a), qb)
        scores[node.name] = float(np.linalg.norm(approx - exact) / max(np.linalg.norm(exact), 1e-12))
    return scores


def back_off(
    ctx: BuildContext, name: str, family: str, full: Candidate, ranking: list[str],
    build: Callable[[list[str]], Outcome],
) -> Outcome:
    """Exclude 1, 2, 4, … of the most sensitive ops until the calibration error fits."""
    target = ctx.allowed_error * MARGIN
    error = ctx.calibration_error(full)
    if error <= target:
        return Skipped(name, family, f"{full.name} already fits the budget on calibration data "
                                     f"(error {error:.4g} ≤ {target:.4g}); nothing to return to float")
    count = 1
    while count < len(ranking):
        built = build(ranking[:count])
        if not isinstance(built, Candidate):
            return built
        error = ctx.calibration_error(built)
        ctx.log(f"{name}: {count} op(s) in float → calibration error {error:.4g} (target {target:.4g})")
        if error <= target:
            return built
        ctx.remove(built)
        count *= 2
    return Skipped(name, family, f"even with {count // 2} of {len(ranking)} ops in float the calibration error "
                                 f"{error:.4g} exceeds {target:.4g}")


def build(ctx: BuildContext, built: list[Outcome]) -> list[Outcome]:
    """Selective versions of the full-int8 ORT dynamic and NNCF variants already built."""
    full = {c.name: c for c in built if isinstance(c, Candidate)}
    wanted = [f for f in ("ort-selective", "nncf-selective") if f in ctx.config.families]
    if not wanted:
        return []
    source = ctx.base_file
    scores = sensitivity(ctx, source)
    ranking = sorted(scores, key=scores.get, reverse=True)
    top = ", ".join(f"{n} ({scores[n]:.3g})" for n in ranking[:3])
    ctx.log(f"most sensitive ops: {top}")
    outcomes: list[Outcome] = []
    if "ort-selective" in wanted:
        name = "ort-int8-selective"
        if "ort-int8-dynamic" not in full:
            outcomes.append(Skipped(name, "ort-selective", "no full dynamic int8 variant to start from"))
        else:
            outcomes.append(attempt(name, "ort-selective", lambda: back_off(
                ctx, name, "ort-selective", full["ort-int8-dynamic"], ranking,
                lambda ex: dynamic_int8(ctx, source, name, ex, "ort-selective"))))
    if "nncf-selective" in wanted:
        name = f"{NNCF}-selective"
        if NNCF not in full:
            outcomes.append(Skipped(name, "nncf-selective", "no full NNCF int8 variant to start from"))
        else:
            built = attempt(name, "nncf-selective", lambda: back_off(
                ctx, name, "nncf-selective", full[NNCF], ranking, lambda ex: nncf_int8(ctx, name, ex, "nncf-selective")))
            outcomes.append(built)
            if isinstance(built, Candidate):  # mixed int8/bf16: the ops left in float run in bf16 where that is fast
                outcomes.append(with_bf16(ctx, built))
    return outcomes
