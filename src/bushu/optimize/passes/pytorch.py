"""PyTorch variants: the package's own module in fp32, bf16 or fp16, eager or under torch.compile.

They are bushu's GPU variants (onnxruntime on the GPU machines we test on is CPU-only) and run
on the CPU too, by the same code. A variant needs no new file: it names the source weights
the package already holds (safetensors) and says in its options how to run them — precision,
compile, the batch buckets compiled graphs are captured for — so it costs no disk and cannot
drift from the verified source. Its fidelity is measured like every other variant's.
"""

from __future__ import annotations

from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped
from bushu.package.manifest import module_ref_problem

FAMILIES = ("pytorch", "pytorch-compile")


def buckets(serving_batch: int, device: str) -> list[int]:
    """The batch sizes to compile a graph for. On a GPU, 1 and the serving batch: padding a batch up
    to the serving batch costs little there, while each bucket costs a compile and a CUDA graph's
    memory. On a CPU padding costs compute in proportion, so powers of two up to the serving batch.
    Larger batches run in chunks of the largest bucket."""
    if device == "cuda":
        return sorted({1, serving_batch})
    sizes = {1 << i for i in range(serving_batch.bit_length()) if 1 << i <= serving_batch}
    return sorted(sizes | {serving_batch})


def slow_reason(ctx: BuildContext, precision: str) -> str | None:
    """Why `precision` cannot win on the target, or None where it may."""
    if ctx.config.target == "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return "PyTorch on a CPU has no fast fp16 kernels for these ops; fp16 is for --target cuda"
    if not ctx.hardware.bf16_fast:
        return "this CPU has no AVX-512 BF16 or AMX-BF16: bf16 would be emulated, slower than fp32"
    return None


def build(ctx: BuildContext) -> list[Outcome]:
    """Every precision × (eager, compiled) the config's families ask for, on the config's target."""
    wanted = [f for f in FAMILIES if f in ctx.config.families]
    if not wanted:
        return []
    provenance = ctx.manifest.provenance
    if not provenance.weights_file or module_ref_problem(provenance.source):
        return [Skipped(f"torch ({family})", family, "the package holds no PyTorch source: it needs the module class "
                                                     "(provenance.source, an importable module:Class) and its "
                                                     "safetensors weights, as `bushu pack --module` writes them")
                for family in wanted]
    device = ctx.config.target
    outcomes: list[Outcome] = []
    for precision in ("fp32", "bf16", "fp16"):
        if reason := slow_reason(ctx, precision):
            outcomes.append(Skipped(f"torch-{precision}", "pytorch", reason))
            continue
        if "pytorch" in wanted:
            outcomes.append(Candidate(f"torch-{precision}", "pytorch", "pytorch", precision, provenance.weights_file,
                                      f"{provenance.source} in {precision}, eager, on {device}", device=device))
        if "pytorch-compile" in wanted:
            sizes = buckets(ctx.config.serving_batch, device)
            graphs = "CUDA graphs" if device == "cuda" else "inductor"
            outcomes.append(Candidate(
                f"torch-{precision}-compiled", "pytorch-compile", "pytorch", precision, provenance.weights_file,
                f"{provenance.source} in {precision} under torch.compile ({graphs}), batches padded to {sizes}",
                device=device, options={"compile": True, "buckets": sizes}))
    return outcomes
