"""`bushu optimize` for generation packages: compressed variants of a language model, each kept
only if its perplexity (or greedy agreement) on the evaluation prompts stays within the
budget, timed in output tokens/s through the serving engine.

Why not the general search (`search.py`): that one times fixed-shape forwards of an ONNX
model; a generator's cost is the decode loop over a KV cache, so here every variant runs in
the engine that serves it (`EngineCore`, continuous batching, `streams` sequences at once).

Families (decoder-only models):
- `pytorch-bf16`: the whole model in bfloat16, only on a CPU with native bf16 (AVX-512 BF16 or
  AMX: elsewhere it is emulated and slower). Not equal precision: say so when comparing.
- `openvino-fp32`: the step (prefill and decode) on OpenVINO, f32.
- `openvino-int8`: the step's weights compressed to int8 (NNCF `compress_weights`, INT8_ASYM,
  per output channel); OpenVINO's CPU plugin quantises the activations of those layers to int8
  on the fly, in groups of 32 (its default `DYNAMIC_QUANTIZATION_GROUP_SIZE` for compressed
  weights), as CTranslate2's int8 does per row.
- `openvino-bf16`, `openvino-int8-bf16`: the same steps computing in bf16 (OpenVINO's
  inference precision; bf16 CPUs only).
- `openvino-int4`: INT4_SYM in groups of `INT4_GROUP` along the input, NNCF's default int8
  backup for the embeddings and the output layer.
- `onnxruntime-int8`, `onnxruntime-int4`: the step exported to ONNX, every projection and the
  output layer quantised by ONNX Runtime's MatMulNBits quantiser (symmetric, blocks of
  `ORT_BLOCK` inputs), f32 activations: weight-only.
The compressed steps are saved as OpenVINO IR or ONNX in the package. The same graph prefills
the prompt (a chunk is a step of many tokens in one row), so a variant computes every token at
its own precision.

Metrics, against the fp32 variant on the same prompts:
- `perplexity`: exp of the mean negative log-likelihood of each evaluation text's tokens, every
  token after the first predicted by the variant's decode step (teacher-forced, all texts in
  one batch); budget: '2%' allows 2 % above the fp32 perplexity.
- `greedy_agreement`: of the fp32 variant's greedy tokens (`new_tokens` per prompt), the
  fraction each variant reproduces before its first different token; budget '5%' allows 0.95.
Select, then confirm: the prompts are split in two halves (even and odd lines); the choice is
the fastest variant within budget on the first half that also holds on the second, else the
next fastest that does; never one slower than fp32.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bushu.errors import InvalidInput
from bushu.optimize.config import Budget
from bushu.package.manifest import Manifest, Variant

#: family → (what runs the decode step, its weights, its activations)
SPECS = {
    "pytorch-bf16": ("pytorch", "fp32", "bf16"),
    "openvino-fp32": ("openvino", "fp32", "f32"),
    "openvino-bf16": ("openvino", "fp32", "bf16"),
    "openvino-int8": ("openvino", "int8", "f32"),
    "openvino-int8-bf16": ("openvino", "int8", "bf16"),
    "openvino-int4": ("openvino", "int4", "f32"),
    "onnxruntime-int8": ("onnxruntime", "int8", "f32"),
    "onnxruntime-int4": ("onnxruntime", "int4", "f32"),
}
FAMILIES = tuple(SPECS)
METRICS = ("perplexity", "greedy_agreement")
INT4_GROUP = 64
#: MatMulNBits' block: inputs sharing one scale.
ORT_BLOCK = 32
REPORT = "report.md"


@dataclass
class GenRow:
    name: str
    precision: str
    notes: str
    selection: float | None = None
    confirmation: float | None = None
    tokens_per_s: float | None = None
    kept: bool = False
    reason: str = ""


@dataclass
class GenResult:
    manifest: Manifest
    metric: str
    budget: Budget
    baseline: str
    choice: str
    why: str
    rows: list[GenRow]
    limit: float
    streams: int
    new_tokens: int
    notes: list[str] = field(default_factory=list)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (AVX-512 BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def read_prompts(path: Path) -> list[str]:
    if path.suffix != ".txt" or not path.is_file():
        raise InvalidInput(f"--eval {path}: a generation package is evaluated on a .txt file, one prompt a line")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < 4:
        raise InvalidInput(f"--eval {path}: {len(lines)} prompts; at least 4 (two to select on, two to confirm)")
    return lines


class _Variants:
    """Opening each variant's engine from the staging package (not hashed yet: still being built)."""

    def __init__(self, staging: Path, manifest: Manifest, settings: Any) -> None:
        self.staging, self.manifest, self.settings = staging, manifest, settings

    def open(self, name: str, variant: Variant) -> Any:
        from bushu.generate.package import open_core
        from bushu.package.store import hash_files

        draft = self.manifest.model_copy(update={"variants": {name: variant}, "default_variant": name,
                                                 "files": hash_files(self.staging)})
        return open_core(self.staging, draft, self.settings)


def compress_step(core: Any, mode: str, out: Path) -> None:
    """The fp32 decode step, its weights compressed by NNCF (`mode` int8 or int4), saved as IR."""
    import openvino as ov

    from bushu.generate.openvino_decode import convert_step
    from bushu.offline import no_openvino_telemetry

    no_openvino_telemetry()  # NNCF reports usage through the same telemetry
    import nncf

    step = convert_step(core.model, core.runner.cache)
    if mode == "int8":
        step = nncf.compress_weights(step, mode=nncf.CompressWeightsMode.INT8_ASYM)
    else:
        step = nncf.compress_weights(step, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=INT4_GROUP, ratio=1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(step, str(out), compress_to_fp16=False)


def quantize_ort_step(core: Any, mode: str, out: Path) -> None:
    """The fp32 decode step exported to ONNX, its MatMuls quantised to MatMulNBits (`mode` int8 or int4)."""
    import tempfile

    from bushu.generate.ort_decode import export_step, quantize_step

    with tempfile.TemporaryDirectory(prefix="bushu-step-") as tmp:
        fp32 = export_step(core.model, core.runner.cache, Path(tmp) / "step.onnx")
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_step(fp32, out, bits=8 if mode == "int8" else 4, block_size=ORT_BLOCK)


def perplexity(core: Any, texts: list[list[int]]) -> float:
    """Teacher-forced perplexity of `texts` through the engine's decode step, all in one batch:
    each text's first token prefilled, every later token predicted by a decode step."""
    import torch

    order = sorted(texts, key=len, reverse=True)  # the rows still running are always 0..n-1
    model, runner, cache = core.model, core.runner, core.runner.cache
    longest = len(order[0])
    if longest < 2:
        raise InvalidInput("perplexity needs prompts of at least two tokens; every evaluation prompt here has one")
    cache.reserve(len(order), longest + 1)
    nll, count = 0.0, 0
    logits = torch.stack([model.prefill(torch.tensor(ids[:1]), row, 0, cache)[-1] for row, ids in enumerate(order)])
    for position in range(1, longest):
        n = sum(len(ids) > position for ids in order)
        target = torch.tensor([ids[position] for ids in order[:n]])
        nll -= float(torch.log_softmax(logits[:n].float(), -1).gather(1, target[:, None]).sum())
        count += n
        if position + 1 < longest:
            n_next = sum(len(ids) > position + 1 for ids in order)
            logits = runner.decode(target[:n_next], torch.full((n_next,), position), cache).float()
    return math.exp(nll / count)


def greedy(core: Any, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    from bushu.generate.config import SamplingParams
    from bushu.generate.sequence import Sequence

    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    return [s.output for s in core.run_to_completion([Sequence(p, params) for p in prompts])]


def agreement(reference: list[list[int]], got: list[list[int]]) -> float:
    """Of the reference's tokens, the fraction reproduced before each prompt's first difference."""
    same = 0
    for ref, out in zip(reference, got):
        same += next((i for i, (a, b) in enumerate(zip(ref, out)) if a != b), min(len(ref), len(out)))
    return same / max(1, sum(map(len, reference)))


def tokens_per_s(cores: dict[str, Any], prompts: list[list[int]], new_tokens: int, rounds: int) -> dict[str, float]:
    """Output tokens/s of each engine on the same concurrent prompts, rounds interleaved, median."""
    times: dict[str, list[float]] = {name: [] for name in cores}
    for core in cores.values():  # warm-up: caches allocated, kernels chosen
        greedy(core, prompts[:2], 2)
    for _ in range(rounds):
        for name, core in cores.items():
            start = time.perf_counter()
            greedy(core, prompts, new_tokens)
            times[name].append(time.perf_counter() - start)
    return {name: len(prompts) * new_tokens / statistics.median(ts) for name, ts in times.items()}


def optimize_generator(
    source: Path, out: Path, *, eval_file: Path, budget: Budget, metric: str | None = None,
    families: tuple[str, ...] | None = None, threads: int = 2, streams: int = 16, new_tokens: int = 32,
    rounds: int = 3, force: bool = False, log: Callable[[str], None] = lambda message: None,
) -> GenResult:
    """Build, measure and choose among the compressed variants of the generation package at `source`."""
    import torch

    from bushu.package.store import verify_package

    metric = metric or "perplexity"
    if metric not in METRICS:
        raise InvalidInput(f"--metric {metric!r}: a generation package is scored on {' or '.join(METRICS)}")
    families = tuple(families or FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise InvalidInput(f"unknown generation variant families {unknown}; known: {', '.join(FAMILIES)}")
    manifest = verify_package(source)
    texts = read_prompts(eval_file)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _optimize(source, manifest, out, texts, budget, metric, families, threads, streams, new_tokens,
                         rounds, force, log)
    finally:
        torch.set_num_threads(before)


def _optimize(source: Path, manifest: Manifest, out: Path, texts: list[str], budget: Budget, metric: str,
              families: tuple[str, ...], threads: int, streams: int, new_tokens: int, rounds: int, force: bool,
              log: Callable[[str], None]) -> GenResult:
    from bushu.generate.config import EngineSettings
    from bushu.package.store import hash_files, staged_package, write_manifest

    settings = EngineSettings(max_sequences=max(streams, len(texts)), threads=threads)
    notes: list[str] = []
    with staged_package(out, force=force) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        (staging / "bushu.json").unlink()
        variants = _Variants(staging, manifest, settings)
        baseline = manifest.default_variant
        base = manifest.variants[baseline]
        if base.options.get("decode", "pytorch") != "pytorch" or base.precision != "fp32":
            raise InvalidInput(f"{source}: its default variant {baseline!r} is not the fp32 PyTorch one; "
                               "optimize the package as packed")
        cores = {baseline: variants.open(baseline, base)}
        codec, config = cores[baseline].codec, cores[baseline].config
        if cores[baseline].model.is_encoder_decoder:
            raise InvalidInput("compressed generation variants cover decoder-only models (GPT-2) so far")
        room = config.context - new_tokens - 1
        ids = [codec.encode(t)[:max(2, room)] for t in texts]
        halves = (ids[0::2], ids[1::2])
        built: dict[str, tuple[Variant, GenRow]] = {}
        for family in families:
            row, variant = _build(family, cores[baseline], staging, base, log)
            if variant is None:
                built[family] = (base, row)
                continue
            try:
                cores[family] = variants.open(family, variant)
            except Exception as exc:  # a runtime refusing this model skips the variant, not the search
                row.reason = f"failed to load: {type(exc).__name__}: {exc}"[:300]
            built[family] = (variant, row)
        log(f"scoring {len(cores)} variants on {len(ids)} prompts ({metric})")
        memo: dict[int, list[list[int]]] = {}
        scores = {name: [_score(core, half, metric, new_tokens, cores[baseline], memo) for half in halves]
                  for name, core in cores.items()}
        reference = scores[baseline]
        higher = metric == "greedy_agreement"
        limits = [budget.allowed_error(1.0 if higher else ref, higher) for ref in reference]
        holds = lambda v, half: (reference[half] - v if higher else v - reference[half]) <= limits[half]  # noqa: E731
        within = lambda s: all(holds(v, half) for half, v in enumerate(s))  # noqa: E731
        log(f"timing {len(cores)} variants: {streams} streams, {new_tokens} new tokens, {rounds} rounds")
        batch = [ids[i % len(ids)] for i in range(streams)]
        speed = tokens_per_s(cores, batch, new_tokens, rounds)
        rows = [GenRow(baseline, "fp32", "the package's fp32 PyTorch variant", *reference, speed[baseline], True,
                       "baseline")]
        for family, (_, row) in built.items():
            if family in scores:
                row.selection, row.confirmation = scores[family]
                row.tokens_per_s = speed[family]
            rows.append(row)
        choice, why = _choose(rows, baseline, holds, speed)
        kept = {**manifest.variants}  # the source's other variants stay, as verified at pack
        for family, (variant, row) in built.items():
            if row.reason == "" and within(scores[family]) and speed[family] > speed[baseline]:
                row.kept = True
                kept[family] = variant.model_copy(update={"metrics": {
                    **variant.metrics, f"{metric}_selection": scores[family][0],
                    f"{metric}_confirmation": scores[family][1], "tokens_per_s": round(speed[family], 2)}})
            else:
                kept.pop(family, None)
                row.reason = row.reason or ("over budget" if not within(scores[family]) else "not faster than fp32")
                step = variant.options.get("step")
                if step:
                    shutil.rmtree(staging / Path(step).parent, ignore_errors=True)
        kept[baseline] = base.model_copy(update={"metrics": {**base.metrics, f"{metric}_selection": reference[0],
                                                             f"{metric}_confirmation": reference[1],
                                                             "tokens_per_s": round(speed[baseline], 2)}})
        del cores
        result = GenResult(manifest, metric, budget, baseline, choice, why, rows, limits[0], streams, new_tokens, notes)
        (staging / REPORT).write_text(report(result))
        (staging / "optimize.json").write_text(json.dumps({
            "metric": metric, "budget": str(budget), "families": list(families), "threads": threads,
            "streams": streams, "new_tokens": new_tokens, "rounds": rounds, "eval_prompts": len(ids)}, indent=2))
        updated = manifest.model_copy(update={"variants": kept, "default_variant": choice, "files": hash_files(staging)})
        result.manifest = write_manifest(staging, Manifest.model_validate(updated.model_dump()))
    return result


def _build(family: str, core: Any, staging: Path, base: Variant, log: Callable[[str], None]) -> tuple[GenRow, Variant | None]:
    """One family's variant (its files written into `staging`), or a row saying why not."""
    runtime, weights, activations = SPECS[family]
    precision = weights if weights != "fp32" else activations.replace("f32", "fp32")
    where = {"pytorch": "the whole model in PyTorch", "openvino": "prefill and decode steps on OpenVINO",
             "onnxruntime": "prefill and decode steps on ONNX Runtime"}[runtime]
    how = {"fp32": "", "int8": ", weights int8", "int4": ", weights int4"}[weights]
    how += {"openvino": " (NNCF" + (f", groups of {INT4_GROUP})" if weights == "int4" else ")"),
            "onnxruntime": f" (MatMulNBits, blocks of {ORT_BLOCK})", "pytorch": ""}[runtime] if weights != "fp32" else ""
    acts = f"{activations} activations"
    if runtime == "openvino" and weights != "fp32" and activations == "f32":
        acts = "activations of the compressed layers quantised to int8 on the fly where the CPU can (OpenVINO)"
    row = GenRow(family, precision, f"{where}{how}, {acts}" + (" (not equal precision)" if activations == "bf16" else ""))
    if activations == "bf16" and not cpu_has_bf16():
        row.reason = "skipped: this CPU has no native bf16 (AVX-512 BF16 or AMX); emulated bf16 is slower"
        return row, None
    options = {**base.options, "decode": runtime}
    if runtime == "openvino" and activations == "bf16":
        options["activations"] = "bf16"
    if weights != "fp32":
        options["step"] = f"variants/{family}/step.{'onnx' if runtime == 'onnxruntime' else 'xml'}"
        log(f"compressing the decode step's weights to {weights} for {runtime}")
        try:
            if runtime == "onnxruntime":
                quantize_ort_step(core, weights, staging / options["step"])
            else:
                compress_step(core, weights, staging / options["step"])
        except ImportError as exc:
            row.reason = f"skipped: {exc.name or 'a library'} is not installed: pip install 'bushu[optimize]'"
            return row, None
        except Exception as exc:  # a quantiser failing on this model skips the variant, not the search
            row.reason = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
            return row, None
    return row, base.model_copy(update={"backend": runtime, "precision": precision, "notes": row.notes,
                                        "options": options})


def _score(core: Any, prompts: list[list[int]], metric: str, new_tokens: int, reference: Any,
           memo: dict[int, list[list[int]]]) -> float:
    if metric == "perplexity":
        return perplexity(core, prompts)
    if id(prompts) not in memo:  # the fp32 variant's tokens, once per half
        memo[id(prompts)] = greedy(reference, prompts, new_tokens)
    return agreement(memo[id(prompts)], greedy(core, prompts, new_tokens))


def _choose(rows: list[GenRow], baseline: str, holds: Callable[[float, int], bool],
            speed: dict[str, float]) -> tuple[str, str]:
    """The fastest variant within budget on the selection half that also holds on the confirmation half."""
    candidates = sorted((r for r in rows if r.name != baseline and r.tokens_per_s is not None and not r.reason),
                        key=lambda r: -r.tokens_per_s)
    for row in candidates:
        if row.tokens_per_s <= speed[baseline]:
            break
        if not holds(row.selection, 0):
            continue
        if not holds(row.confirmation, 1):
            row.reason = "in budget on the selection prompts, not on the confirmation prompts: passed over"
            continue
        return row.name, (f"{row.tokens_per_s / speed[baseline]:.2f}× the fp32 variant's tokens/s, within budget on "
                          "the selection and the confirmation prompts")
    return baseline, "no compressed variant was both within budget and faster than fp32"


def report(result: GenResult) -> str:
    base = next(r for r in result.rows if r.name == result.baseline)
    lines = [f"# bushu optimize (generation) — {result.manifest.name}", "",
             f"Metric: {result.metric} on the evaluation prompts (selection half / confirmation half), budget "
             f"{result.budget}; tokens/s: {result.streams} concurrent streams, {result.new_tokens} new tokens, "
             "through the serving engine.", "",
             f"| variant | precision | {result.metric} (selection) | (confirmation) | output tokens/s | vs fp32 | kept | why |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in result.rows:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        ratio = f"{r.tokens_per_s / base.tokens_per_s:.2f}×" if r.tokens_per_s else "-"
        tps = f"{r.tokens_per_s:.1f}" if r.tokens_per_s else "-"
        mark = " (chosen)" if r.name == result.choice else ""
        lines.append(f"| {r.name}{mark} | {r.precision} | {fmt(r.selection)} | {fmt(r.confirmation)} | {tps} | "
                     f"{ratio} | {'yes' if r.kept else 'no'} | {r.reason or r.notes} |")
    lines += ["", f"Chose **{result.choice}**: {result.why}."]
    return "\n".join(lines) + "\n"
