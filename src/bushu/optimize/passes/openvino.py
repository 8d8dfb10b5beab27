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


def nncf_int8(ctx: BuildContext, name: str, ignored: list[str] | None = None, family: str = "nncf") -> Outcome:
    """NNCF post-training int8 of the fp32 graph, calibrated on the calibration set."""
    if reason := no_int8_reason(ctx):
        return Skipped(name, family, reason)
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ctx.staging / ctx.base_file))
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
    return outcomes
