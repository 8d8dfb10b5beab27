"""ONNX Runtime variants: transformer fusion, dynamic int8, and static int8 (QDQ, per channel).

Static int8 is written in the QDQ format, which OpenVINO also runs as int8, so one calibrated
file gives a candidate on each runtime.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import numpy as np

from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, attempt
from bushu.optimize.samples import Samples

FUSED = "ort-fp32-fused"
CALIBRATION_METHODS = ("minmax", "percentile")


def no_int8_reason(ctx: BuildContext) -> str | None:
    if ctx.hardware.int8_fast:
        return None
    return "this CPU has no VNNI or AMX-INT8: int8 matrix products would be slower than fp32"


def fuse_transformer(ctx: BuildContext) -> Outcome:
    """ORT's transformer fusions (attention, skip-layer-norm, GELU) on the fp32 graph."""
    if not ctx.transformer:
        return Skipped(FUSED, "ort-fused", "not a transformer: there are no attention/GELU patterns to fuse")
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(ctx.staging / ctx.base_file), model_type="bert", num_heads=0, hidden_size=0,
                           opt_level=0)
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    if not stats:
        return Skipped(FUSED, "ort-fused", "ORT's optimizer found no transformer patterns in this graph")
    file = f"variants/{FUSED}.onnx"
    fused.save_model_to_file(str(ctx.path(file)))
    summary = ", ".join(f"{v} {k}" for k, v in sorted(stats.items()))
    return Candidate(FUSED, "ort-fused", "onnxruntime", "fp32", file, f"fused: {summary}")


def dynamic_int8(ctx: BuildContext, source: str, name: str, exclude: list[str] | None = None,
                 family: str = "ort-dynamic") -> Outcome:
    """Weights int8 per channel, activations quantised on the fly per batch: no calibration."""
    if reason := no_int8_reason(ctx):
        return Skipped(name, family, reason)
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    file = f"variants/{name}.onnx"
    # Only matrix products: a dynamically quantised Conv (ConvInteger) or Gather is slower or
    # costs accuracy for no speed. Fused graphs hold contrib ops that shape inference cannot
    # type; their tensors are float.
    with quiet_root_logger():
        quantize_dynamic(str(ctx.staging / source), str(ctx.path(file)), weight_type=QuantType.QInt8,
                         per_channel=True, nodes_to_exclude=exclude or [],
                         op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
    kept = f"; {len(exclude)} most sensitive op(s) left in fp32" if exclude else ""
    return Candidate(name, family, "onnxruntime", "int8", file,
                     f"dynamic int8 (per-channel weights) of {source}{kept}")


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Keep ORT's quantiser from configuring the root logger where nobody has.

    It warns with `logging.warning` ("Please consider to run pre-processing before
    quantization", on every call), which, on a root logger without handlers, calls
    `basicConfig()` and prints — and leaves that handler behind for every later record. Where
    no one has set up logging (bushu used as a library), a handler held meanwhile makes that a
    no-op and the warning goes nowhere. Where someone has (the CLI's `bushu.cli.output`, which
    shows other libraries' records with `--verbose` only), their setup decides.
    """
    root = logging.getLogger()
    holder = None if root.handlers else logging.NullHandler()
    if holder is not None:
        root.addHandler(holder)
    try:
        yield
    finally:
        if holder is not None:
            root.removeHandler(holder)


class _Reader:
    """Feeds calibration batches to ORT's calibrator, all of one size: its histogram calibrators
    (percentile, entropy) stack the batches and fail on a short last one, so that one wraps around.
    """

    def __init__(self, samples: Samples, batch: int = 16) -> None:
        n, size = len(samples), min(batch, len(samples))
        self._batches = iter([{k: v[np.arange(start, start + size) % n] for k, v in samples.inputs.items()}
                              for start in range(0, n, size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def static_int8(ctx: BuildContext, source: str, name: str, method: str, exclude: list[str] | None = None,
                family: str = "ort-static") -> Outcome:
    """QDQ int8, per-channel weights, activation ranges calibrated on the calibration set."""
    if reason := no_int8_reason(ctx):
        return Skipped(name, family, reason)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    file = f"variants/{name}.onnx"
    # On a transformer only the matrix products: int8 pays there, and a quantised scalar input
    # of the attention's scaling Mul makes OpenVINO's MultiplyPartialTransformation fail to
    # compile the QDQ file.
    op_types = {"op_types_to_quantize": ["MatMul", "Gemm"]} if ctx.transformer else {}
    with contextlib.redirect_stdout(io.StringIO()), quiet_root_logger():  # its calibrator print()s progress
        quantize_static(
            str(ctx.staging / source), str(ctx.path(file)), _Reader(ctx.calibration), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method], nodes_to_exclude=exclude or [], **op_types
        )
    kept = f"; {len(exclude)} most sensitive op(s) left in fp32" if exclude else ""
    return Candidate(name, family, "onnxruntime", "int8", file,
                     f"static int8 QDQ, per-channel, {method} calibration on {len(ctx.calibration)} samples{kept}")


#: GPU variants of the fp32 graph: (name, precision, provider, provider options). Selectable where
#: onnxruntime-gpu is installed; bushu's own GPU machine has a CPU-only onnxruntime, so unverified.
GPU_VARIANTS = (
    ("ort-cuda-fp32", "fp32", "CUDAExecutionProvider", {}),
    ("ort-tensorrt-fp16", "fp16", "TensorrtExecutionProvider", {"trt_fp16_enable": True}),
)


def gpu(ctx: BuildContext) -> list[Outcome]:
    """The fp32 graph on ORT's CUDA and TensorRT providers, where this onnxruntime has them."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    outcomes: list[Outcome] = []
    for name, precision, provider, options in GPU_VARIANTS:
        if provider not in available:
            outcomes.append(Skipped(name, "ort-cuda", f"this onnxruntime has no {provider} (install onnxruntime-gpu)"))
            continue
        outcomes.append(Candidate(name, "ort-cuda", "onnxruntime", precision, ctx.base_file,
                                  f"{ctx.base_file} on {provider} (not verified by bushu's tests)", device="cuda",
                                  options={"provider": provider, "provider_options": options}))
    return outcomes


def build(ctx: BuildContext) -> list[Outcome]:
    """Every ORT family the config asks for; dynamic int8 starts from the fused graph if any."""
    outcomes: list[Outcome] = []
    families = ctx.config.families
    source = ctx.base_file
    if any(f.startswith("ort") for f in families):
        outcomes.append(Skipped("ort-fp16", "ort", "ONNX Runtime's CPU provider runs fp16 by casting back to fp32, "
                                               "so fp16 cannot win on a CPU; bf16 is offered through OpenVINO"))
    if "ort-fused" in families:
        fused = attempt(FUSED, "ort-fused", lambda: fuse_transformer(ctx))
        outcomes.append(fused)
        if isinstance(fused, Candidate):
            source = fused.file
    if "ort-dynamic" in families:
        outcomes.append(attempt("ort-int8-dynamic", "ort-dynamic", lambda: dynamic_int8(ctx, source, "ort-int8-dynamic")))
    if "ort-static" in families:
        for method in CALIBRATION_METHODS:
            name = f"ort-int8-static-{method}"
            built = attempt(name, "ort-static", lambda: static_int8(ctx, ctx.base_file, name, method))
            outcomes.append(built)
            if isinstance(built, Candidate):  # the same QDQ file, run by OpenVINO's int8 kernels
                outcomes.append(Candidate(f"ov-int8-qdq-{method}", "ort-static", "openvino", "int8", built.file,
                                          f"{built.name}'s QDQ file run by OpenVINO"))
    return outcomes
