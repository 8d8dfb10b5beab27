"""Distillation: a narrower model of the source's own class, trained to answer as the source does.

Teacher: the package's source module with its fp32 weights. Student: the same class built with
narrower layers. A package never carries code, so the student is data: the class the manifest
already names (`provenance.source`), its constructor arguments and its weights. Which arguments
set a width is declared by the class itself, as the tuple of names `WIDTHS` (read, never
called); each is scaled by one of the config's `distill_scales`. A class without `WIDTHS` is
skipped with that reason. A class may also declare `CHEAPER`, constructor arguments and values
that cut its work another way (the seed CNN: a strided first convolution); each scale then has a
second student with those values too.

The student starts from the teacher where it can: when torch-pruning can cut the teacher down to
exactly the student's widths (convolution and linear stacks) it keeps the teacher's strongest
channels; otherwise the student is fresh, with the teacher's tensors of unchanged shape copied in
and narrower embedding tables projected onto the teacher's principal directions.

A packed transformers encoder is a directory, not a class: its student is the same architecture
with fewer layers (`distill_encoder`).

Training needs no labels: the loss is the distance to the teacher's outputs (softened KL for a
classifier, mean squared error otherwise) on the training and calibration inputs, and for a text
package bushu's default texts too — never the eval inputs, which judge the result. Float inputs
(images) are also mixed in pairs (mixup), which the teacher labels too: the student sees more of
the input space than the files hold. The teacher answers once, for every student of the search
(`Lesson`). Each student is then exported and verified like any PyTorch source, quantised like the source, and
measured and judged like every other variant, within the same budget.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bushu.optimize.passes import BuildContext, Candidate, Outcome, Skipped, attempt
from bushu.optimize.passes.distill_encoder import LEARNING_RATE as ENCODER_LEARNING_RATE
from bushu.optimize.passes.distill_encoder import encoder_student, encoder_teacher, is_encoder
from bushu.optimize.passes.openvino import nncf_int8, with_bf16
from bushu.optimize.passes.ort import static_int8

FAMILY = "distill"
BATCH = 64
TEMPERATURE = 2.0
LEARNING_RATE = 3e-3
#: Mixtures of float inputs added per given input (see `augmented`).
MIXUP_COPIES = 3


def student_name(scale: float, cheaper: dict[str, Any] | None = None) -> str:
    return f"distill-{round(scale * 100)}" + "".join(f"-{k}{v}" for k, v in (cheaper or {}).items())


def teacher(ctx: BuildContext) -> Any:  # -> torch.nn.Module | str (why not)
    from bushu.export.source import build_module
    from bushu.package.manifest import module_ref_problem

    if is_encoder(ctx):
        return encoder_teacher(ctx)
    provenance = ctx.manifest.provenance
    if not provenance.weights_file or module_ref_problem(provenance.source):
        return "the package has no PyTorch source module (an importable module:Class) and weights to distil from"
    module = build_module(provenance.source, ctx.staging / provenance.weights_file, provenance.source_kwargs,
                          from_manifest=True)
    if not getattr(type(module), "WIDTHS", None):
        return (f"{provenance.source} declares no WIDTHS (the constructor arguments that set its layers' widths), "
                "so no narrower student of its class can be described")
    return module


def student_kwargs(module: Any, source_kwargs: dict[str, Any], scale: float,
                   cheaper: dict[str, Any] | None = None) -> dict[str, Any]:
    """The teacher's constructor arguments (its defaults, then the package's) with each width scaled,
    and `cheaper`'s values over them."""
    defaults = {name: p.default for name, p in inspect.signature(type(module)).parameters.items()
                if p.default is not inspect.Parameter.empty}
    kwargs = {**defaults, **source_kwargs}
    for name in type(module).WIDTHS:
        kwargs[name] = max(1, round(int(kwargs[name]) * scale))
    return {**kwargs, **(cheaper or {})}


def cheaper_forms(module: Any) -> list[dict[str, Any]]:
    """The students each scale has: narrower only, and narrower with the class's `CHEAPER` values
    where it declares them and the teacher does not already use them."""
    cheaper = dict(getattr(type(module), "CHEAPER", None) or {})
    current = module.constructor_kwargs() if hasattr(module, "constructor_kwargs") else {}
    return [{}] + ([cheaper] if cheaper and any(current.get(k) != v for k, v in cheaper.items()) else [])


def _pruned_start(module: Any, kwargs: dict[str, Any], scale: float, example: Any) -> dict[str, Any] | None:
    """The teacher's strongest channels at exactly the student's widths, or None where torch-pruning
    cannot cut it to them (it leaves recurrent layers alone)."""
    import copy

    import torch
    import torch_pruning as tp

    pruned = copy.deepcopy(module)
    linears = [m for m in pruned.modules() if isinstance(m, torch.nn.Linear)]
    try:
        tp.pruner.MetaPruner(pruned, example, importance=tp.importance.MagnitudeImportance(p=2),
                             pruning_ratio=1 - scale, ignored_layers=linears[-1:]).step()
    except Exception:  # noqa: BLE001 — its graph tracing fails on some models: the student starts fresh instead
        return None
    if not hasattr(pruned, "constructor_kwargs"):
        return None
    widths = pruned.constructor_kwargs()
    return pruned.state_dict() if all(widths.get(k) == kwargs[k] for k in type(module).WIDTHS) else None


def _teacher_start(student: Any, theirs: dict[str, Any]) -> None:
    """Copy the teacher's tensors (or its pruned copy's) of unchanged shape; narrower embeddings from
    its principal directions."""
    import torch

    embeddings = {f"{name}.weight" for name, m in student.named_modules() if isinstance(m, torch.nn.Embedding)}
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            source = theirs.get(name)
            if source is None:
                continue
            if source.shape == tensor.shape:
                tensor.copy_(source)
            elif name in embeddings and source.shape[0] == tensor.shape[0]:
                _, _, directions = torch.linalg.svd(source.float(), full_matrices=False)
                tensor.copy_(source.float() @ directions[: tensor.shape[1]].T)


def _inputs(ctx: BuildContext) -> dict[str, np.ndarray]:
    """The unlabelled inputs to distil on: the training set's, the calibration set's and bushu's broad
    default texts (for a text package), padded to one shape where their sequence lengths differ
    (right-padding with 0, as the text tokenizers pad)."""
    sets = [s.inputs for s in (ctx.train, ctx.calibration, ctx.unlabelled) if s is not None]
    joined = {}
    for name in sets[0]:
        arrays = [s[name] for s in sets]
        shape = np.max([a.shape[1:] for a in arrays], axis=0)
        padded = [np.pad(a, [(0, 0)] + [(0, int(want - have)) for want, have in zip(shape, a.shape[1:])])
                  for a in arrays]
        joined[name] = np.concatenate(padded)
    return joined


def _loss(student_out: Any, teacher_out: Any, classifier: bool) -> Any:
    import torch.nn.functional as F

    if not classifier:
        return F.mse_loss(student_out, teacher_out)
    return F.kl_div(F.log_softmax(student_out / TEMPERATURE, -1), F.log_softmax(teacher_out / TEMPERATURE, -1),
                    log_target=True, reduction="batchmean") * TEMPERATURE ** 2


def augmented(inputs: list[np.ndarray], copies: int, seed: int) -> list[np.ndarray]:
    """The inputs and, where they are all floats (images), `copies` times as many pairwise mixtures
    (mixup): inputs the teacher can label though no file holds them."""
    if copies == 0 or not all(np.issubdtype(a.dtype, np.floating) for a in inputs):
        return inputs
    rng = np.random.default_rng(seed)
    count = len(inputs[0]) * copies
    first, second = rng.integers(0, len(inputs[0]), (2, count))
    weight = rng.beta(0.4, 0.4, count).astype(np.float32)
    mixed = []
    for a in inputs:
        w = weight.reshape((count,) + (1,) * (a.ndim - 1))
        mixed.append(np.concatenate([a, (a[first] * w + a[second] * (1 - w)).astype(a.dtype)]))
    return mixed


@dataclass
class Lesson:
    """What every student of one teacher learns from, prepared once for all of them: the inputs (as
    given, then their mixtures) and the teacher's answers — its forward pass costs many times a
    student's, and the answers are the same for every scale and form."""
    inputs: list[Any]  # torch tensors, the model's inputs in order
    given: int  # how many rows the files and default texts held; the rest are mixtures
    targets: Any
    output: int  # which of the model's outputs the answers are
    classifier: bool
    learning_rate: float


def lesson(ctx: BuildContext, module: Any, encoder: bool) -> Lesson:
    import torch

    pool = _inputs(ctx)
    given = [pool[s.name] for s in ctx.manifest.inputs]
    tensors = [torch.from_numpy(a) for a in augmented(given, MIXUP_COPIES, ctx.config.seed)]
    output = [s.name for s in ctx.manifest.outputs].index(ctx.metric.output)
    with torch.no_grad():
        targets = torch.cat([_answer(module, [t[i:i + 512] for t in tensors], output)
                             for i in range(0, len(tensors[0]), 512)])
    classifier = ctx.metric.name in ("accuracy", "macro_f1", "top1_agreement")
    return Lesson(tensors, len(given[0]), targets, output, classifier,
                  ENCODER_LEARNING_RATE if encoder else LEARNING_RATE)


def _answer(model: Any, batch: list[Any], output: int) -> Any:
    import torch

    out = model(*batch)
    return (out if isinstance(out, torch.Tensor) else out[output]).float()


def train(student: Any, taught: Lesson, steps: int, seed: int) -> None:
    """Fit `student` to the teacher's answers in `steps` batches."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=taught.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=taught.learning_rate, total_steps=steps)
    student.train()
    done = 0
    while done < steps:
        for index in torch.randperm(len(taught.targets), generator=generator).split(BATCH):
            if done == steps:
                break
            done += 1
            optimizer.zero_grad()
            answers = _answer(student, [t[index] for t in taught.inputs], taught.output)
            _loss(answers, taught.targets[index], taught.classifier).backward()
            optimizer.step()
            schedule.step()
    student.eval()


def _student(ctx: BuildContext, module: Any, scale: float, cheaper: dict[str, Any], example: list[Any],
             encoder: bool) -> tuple[Any, str, str, dict[str, Any]]:
    """The untrained student at `scale` (with `cheaper`'s arguments), started from the teacher:
    (module, what it is, how it was started, what rebuilds it)."""
    from bushu.export.source import instantiate

    if encoder:
        student, started, kwargs = encoder_student(module, scale)
        return (student, f"{type(module.encoder).__name__} with {kwargs['num_hidden_layers']} of the teacher's "
                f"{module.encoder.config.num_hidden_layers} layers", started, kwargs)
    source = ctx.manifest.provenance.source
    kwargs = student_kwargs(module, ctx.manifest.provenance.source_kwargs, scale, cheaper)
    student = instantiate(type(module), source, kwargs)
    start = _pruned_start(module, kwargs, scale, example[0] if len(example) == 1 else example)
    if start is not None and not cheaper:
        student.load_state_dict(start, strict=True)
        started = "strongest channels (torch-pruning)"
    else:
        _teacher_start(student, start if start is not None else module.state_dict())
        started = ("strongest channels (torch-pruning) where shapes allow" if start is not None
                   else "tensors where shapes allow")
    shown = [*type(module).WIDTHS, *cheaper]
    return (student, f"{source.split(':')[-1]}({', '.join(f'{k}={kwargs[k]}' for k in shown)})",
            f"the teacher's {started}", kwargs)


def distil(ctx: BuildContext, module: Any, taught: Lesson, scale: float, cheaper: dict[str, Any],
           encoder: bool) -> Outcome:
    """Build, start, train, export and verify the student at `scale` of the teacher's widths (and
    `cheaper`'s arguments)."""
    import torch
    from safetensors.torch import save_model

    from bushu.export import hf
    from bushu.export.torch_onnx import EXPORTERS, export_module

    name = student_name(scale, cheaper)
    torch.manual_seed(ctx.config.seed)
    example = [t[:2] for t in taught.inputs]
    student, described, started, kwargs = _student(ctx, module, scale, cheaper, example, encoder)
    before = sum(p.numel() for p in module.parameters())
    after = sum(p.numel() for p in student.parameters())
    clock, cpu = time.perf_counter(), time.process_time()
    steps = ctx.config.distill_steps
    train(student, taught, steps, ctx.config.seed)
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    ranges = {s.name: s.range for s in ctx.manifest.inputs if s.range is not None}
    file = f"variants/{name}.onnx"
    names = [s.name for s in ctx.manifest.outputs]
    result = export_module(student, ctx.manifest.inputs, ctx.path(file), output_names=names,
                           value_ranges={**ranges, **hf.VERIFY_RANGES} if encoder else ranges,
                           exporters=hf.EXPORTERS if encoder else EXPORTERS)
    if "pytorch" in ctx.config.families and not encoder:  # its weights travel only for its PyTorch variant
        save_model(student, str(ctx.path(f"variants/{name}.safetensors")))
    mixtures = len(taught.targets) - taught.given
    return Candidate(name, FAMILY, "onnxruntime", "fp32", file,
                     f"student {described}: {after:,} of the teacher's {before:,} parameters, started from "
                     f"{started}, distilled {steps} steps of {BATCH} on {taught.given} unlabelled inputs"
                     f"{f' and {mixtures} mixtures of them' if mixtures else ''} "
                     f"in {seconds:.0f} s ({cpu:.0f} s of CPU); export verified ({result.exporter})",
                     options={"kwargs": kwargs})


def build(ctx: BuildContext) -> list[Outcome]:
    """Per scale and form (`cheaper_forms`): the student in fp32 on ONNX Runtime and OpenVINO, bf16 on
    OpenVINO, and int8."""
    module = teacher(ctx)
    if isinstance(module, str):
        return [Skipped(student_name(s), FAMILY, module) for s in ctx.config.distill_scales]
    encoder = is_encoder(ctx)
    students = [(s, c) for s in ctx.config.distill_scales for c in ([{}] if encoder else cheaper_forms(module))]
    taught = attempt(FAMILY, FAMILY, lambda: lesson(ctx, module, encoder))
    if isinstance(taught, Skipped):
        return [Skipped(student_name(s, c), FAMILY, taught.reason) for s, c in students]
    outcomes: list[Outcome] = []
    for scale, cheaper in students:
        name = student_name(scale, cheaper)
        ctx.log(f"distilling {name}")
        student = attempt(name, FAMILY, lambda scale=scale, cheaper=cheaper:
                          distil(ctx, module, taught, scale, cheaper, encoder))
        outcomes.append(student)
        if not isinstance(student, Candidate):
            continue
        on_openvino = Candidate(f"{name}-ov-fp32", FAMILY, "openvino", "fp32", student.file, "the student on OpenVINO")
        outcomes += [on_openvino, with_bf16(ctx, on_openvino)]
        if "pytorch" in ctx.config.families and not encoder:
            outcomes.append(Candidate(f"{name}-torch-fp32", FAMILY, "pytorch", "fp32", f"variants/{name}.safetensors",
                                      "the student in PyTorch eager: the package's class with these widths",
                                      device=ctx.config.target, options={"kwargs": student.options["kwargs"]}))
        outcomes += _int8(ctx, name, student.file, encoder)
    return outcomes


def _int8(ctx: BuildContext, name: str, file: str, encoder: bool) -> list[Outcome]:
    """The student in int8: NNCF's transformer preset for an encoder (static QDQ of its matrix
    products loses too much there), static QDQ int8 on both runtimes otherwise."""
    if encoder:
        built = attempt(f"{name}-ov-int8-nncf", FAMILY,
                        lambda: nncf_int8(ctx, f"{name}-ov-int8-nncf", family=FAMILY, source=file))
        return [built, with_bf16(ctx, built)] if isinstance(built, Candidate) else [built]
    quantized = attempt(f"{name}-int8-static", FAMILY,
                        lambda: static_int8(ctx, file, f"{name}-int8-static", "minmax", family=FAMILY))
    if not isinstance(quantized, Candidate):
        return [quantized]
    return [quantized, Candidate(f"{name}-ov-int8-qdq", FAMILY, "openvino", "int8", quantized.file,
                                 "the student's static int8 QDQ file run by OpenVINO")]
