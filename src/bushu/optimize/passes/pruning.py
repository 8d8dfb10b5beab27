"""Structured channel pruning with a short fine-tune: fewer channels, so less work per image.

Whole conv channels and linear neurons are removed (torch-pruning follows the dependencies
between layers), the smaller model is fine-tuned on the training data, and exported and
verified like any PyTorch source. Unstructured masking (zeroed weights in dense tensors) is
deliberately absent: dense kernels do the same work on zeros, so it is no speed-up.
Needs the package's source module and weights, and labelled training data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, attempt
from bushu.optimize.passes.openvino import nncf_int8
from bushu.optimize.passes.ort import static_int8

PRUNED = "pruned-fp32"


def _module(ctx: BuildContext):  # -> torch.nn.Module | str (why not)
    from bushu.export.source import build_module
    from bushu.package.manifest import module_ref_problem

    provenance = ctx.manifest.provenance
    if not provenance.weights_file or module_ref_problem(provenance.source):
        return "the package has no PyTorch source module (an importable module:Class) and weights to prune"
    return build_module(provenance.source, ctx.staging / provenance.weights_file, {}, from_manifest=True)


def _finetune(module, train, epochs: int, seed: int) -> None:
    import torch

    (name,) = train.inputs  # one input: the image batch
    x = torch.from_numpy(train.inputs[name])
    y = torch.from_numpy(train.labels.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    steps = epochs * -(-len(x) // 64)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    module.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(x[batch]), y[batch]).backward()
            optimizer.step()
            schedule.step()
    module.eval()


def prune(ctx: BuildContext) -> Outcome:
    """Remove `prune_ratio` of the channels (all but the classifier), fine-tune, export."""
    if ctx.train is None or ctx.train.labels is None:
        return Skipped(PRUNED, "pruning", "needs labelled training data (--train) to fine-tune after pruning")
    if len(ctx.manifest.inputs) != 1:
        return Skipped(PRUNED, "pruning", "pruning is offered for single-input models (vision)")
    module = _module(ctx)
    if isinstance(module, str):
        return Skipped(PRUNED, "pruning", module)
    import torch
    import torch_pruning as tp

    from bushu.export.torch_onnx import export_module

    torch.manual_seed(ctx.config.seed)
    module.eval()
    example = torch.from_numpy(ctx.calibration.batch(2)[ctx.manifest.inputs[0].name])
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    pruner = tp.pruner.MetaPruner(
        module, example, importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ctx.config.prune_ratio, ignored_layers=linears[-1:],
    )
    before = sum(p.numel() for p in module.parameters())
    pruner.step()
    after = sum(p.numel() for p in module.parameters())
    _finetune(module, ctx.train, ctx.config.finetune_epochs, ctx.config.seed)
    file = f"variants/{PRUNED}.onnx"
    names = [s.name for s in ctx.manifest.outputs]
    result = export_module(module, ctx.manifest.inputs, ctx.path(file), output_names=names)
    return Candidate(PRUNED, "pruning", "onnxruntime", "fp32", file,
                     f"{ctx.config.prune_ratio:.0%} of channels pruned ({before:,} → {after:,} parameters), "
                     f"fine-tuned {ctx.config.finetune_epochs} epochs on {len(ctx.train)} samples; "
                     f"export verified ({result.exporter})")


def build(ctx: BuildContext) -> list[Outcome]:
    """The pruned fp32 model, its NNCF int8 on OpenVINO, and its static int8 on ORT and OpenVINO."""
    if "pruning" not in ctx.config.families:
        return []
    pruned = attempt(PRUNED, "pruning", lambda: prune(ctx))
    if not isinstance(pruned, Candidate):
        return [pruned]
    outcomes: list[Outcome] = [pruned, Candidate("pruned-ov-fp32", "pruning", "openvino", "fp32", pruned.file,
                                                 "the pruned model on OpenVINO")]
    if "nncf" in ctx.config.families:
        pruned_ctx = replace(ctx, base_file=pruned.file)
        outcomes.append(attempt("pruned-ov-int8-nncf", "pruning",
                                lambda: nncf_int8(pruned_ctx, "pruned-ov-int8-nncf", family="pruning")))
    quantized = attempt("pruned-int8-static", "pruning",
                        lambda: static_int8(ctx, pruned.file, "pruned-int8-static", "minmax", family="pruning"))
    outcomes.append(quantized)
    if isinstance(quantized, Candidate):
        outcomes.append(Candidate("pruned-ov-int8-qdq", "pruning", "openvino", "int8", quantized.file,
                                  "the pruned model's static int8 QDQ file run by OpenVINO"))
    return outcomes
