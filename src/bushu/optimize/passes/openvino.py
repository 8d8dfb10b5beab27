"""OpenVINO variants: fp32, bf16 where the CPU has it, and NNCF post-training int8.

OpenVINO reads the package's ONNX file directly, so the fp32 and bf16 variants add no file;
they differ from each other only in the inference precision the runtime is told to use.
NNCF int8 uses its transformer preset (SmoothQuant, sensitive ops kept in float) on
transformers, and writes OpenVINO IR.
"""

from __future__ import annotations

from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, attempt
from bushu.optimize.passes.ort import no_int8_reason

NNCF = "ov-int8-nncf"


def nncf_int8(ctx: BuildContext, name: str, ignored: list[str] | None = None, family: str = "nncf",
              source: str | None = None) -> Outcome:
    """NNCF post-training int8 of the fp32 graph (or of `source`, a file in the package), calibrated
    on the calibration set."""
    if reason := no_int8_reason(ctx):
        return Skipped(name, family, reason)
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ctx.staging / (source or ctx.base_file)))
    batches = list(ctx.calibration.batches(16))
    options: dict[str, object] = {"subset_size": len(batches)}  # NNCF counts dataset items: batches
    if ctx.transformer:
        options["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored:
        options["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    quantized = nncf.quantize(model, nncf.Dataset(batches), **options)
    file = f"variants/{name}.xml"
    ov.save_model(quantized, str(ctx.path(file)), compress_to_fp16=False)
    preset = "transformer preset" if ctx.transformer else "default preset"
    kept = f"; {len(ignored)} most sensitive op(s) left in float" if ignored else ""
    return Candidate(name, family, "openvino", "int8", file,
                     f"NNCF int8 ({preset}), {len(ctx.calibration)} calibration samples{kept}")


def nncf_accuracy_control(ctx: BuildContext, name: str = f"{NNCF}-accuracy") -> Outcome:
    """NNCF's accuracy-controlled int8: it reverts ops to float, ranked by their effect, until the
    drop on validation data is within the budget (with the selective pass's margin). The
    validation data is the calibration set — never the eval set — scored like `calibration_error`.
    """
    if reason := no_int8_reason(ctx):
        return Skipped(name, "nncf-accuracy", reason)
    import nncf
    import numpy as np
    import openvino as ov

    from bushu.optimize.passes.selective import MARGIN

    core = ov.Core()
    batches = list(ctx.calibration.batches(16))
    output = ctx.metric.output
    original = core.compile_model(core.read_model(str(ctx.staging / ctx.base_file)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    reference = {_key(b): original(b)[original.output(output)].copy() for b in batches}

    def validate(compiled, items) -> float:
        items = list(items)
        got = np.concatenate([compiled(b)[compiled.output(output)] for b in items])
        want = np.concatenate([reference[_key(b)] for b in items])
        # 1 − error: higher is better and the original scores exactly 1 (NNCF divides by it).
        return 1.0 - ctx.metric.error(ctx.metric.score(got, want, None), ctx.metric.score(want, want, None))

    options: dict[str, object] = {"subset_size": len(batches)}
    if ctx.transformer:
        options["model_type"] = nncf.ModelType.TRANSFORMER
    quantized = nncf.quantize_with_accuracy_control(
        core.read_model(str(ctx.staging / ctx.base_file)), nncf.Dataset(batches), nncf.Dataset(batches), validate,
        max_drop=ctx.allowed_error * MARGIN, drop_type=nncf.DropType.ABSOLUTE, **options)
    file = f"variants/{name}.xml"
    ov.save_model(quantized, str(ctx.path(file)), compress_to_fp16=False)
    return Candidate(name, "nncf-accuracy", "openvino", "int8", file,
                     f"NNCF accuracy-controlled int8, max drop {ctx.allowed_error * MARGIN:.4g} on calibration data")


def _key(batch: dict) -> bytes:
    return b"".join(v.tobytes() for v in batch.values())


def with_bf16(ctx: BuildContext, built: Candidate) -> Outcome:
    """The same file with its float parts run in bf16 (AMX/AVX-512 BF16 only)."""
    name = built.name.replace("fp32", "bf16") if "fp32" in built.name else f"{built.name}-bf16"
    if not ctx.hardware.bf16_fast:
        return Skipped(name, built.family, "this CPU has no AVX-512 BF16 or AMX-BF16: bf16 would be emulated")
    precision = "bf16" if built.precision == "fp32" else f"{built.precision}+bf16"
    return Candidate(name, built.family, "openvino", precision, built.file, f"{built.notes}; float ops in bf16 (AMX/AVX-512 BF16)")


def build(ctx: BuildContext) -> list[Outcome]:
    outcomes: list[Outcome] = []
    if "openvino" in ctx.config.families:
        fp32 = Candidate("ov-fp32", "openvino", "openvino", "fp32", ctx.base_file, "OpenVINO CPU")
        outcomes += [fp32, with_bf16(ctx, fp32)]
    if "nncf" in ctx.config.families:
        built = attempt(NNCF, "nncf", lambda: nncf_int8(ctx, NNCF))
        outcomes.append(built)
        if isinstance(built, Candidate):
            outcomes.append(with_bf16(ctx, built))
    if "nncf-accuracy" in ctx.config.families:
        outcomes.append(attempt(f"{NNCF}-accuracy", "nncf-accuracy", lambda: nncf_accuracy_control(ctx)))
    return outcomes
