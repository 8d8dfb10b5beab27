"""`transformers` language models → generation packages, verified step by step.

A causal LM (GPT-2) or an encoder-decoder (T5) is packed as what it is: its own checkpoint
(config.json + safetensors, re-saved so no pickle travels), its `tokenizers` file and a
generation config. bushu runs it with its own forward passes over a slot KV cache
(`bushu.generate.models`), so the export is accepted only if, on the files as packed,
1. the logits at every step of a cached, batched decode equal `transformers`' logits for the
   same tokens within `tolerance` (the worst relative error is recorded in the manifest), and
2. greedy generation through the serving engine (continuous batching, all prompts at once)
   gives exactly the tokens of `transformers`' `generate()` for each of `prompts` prompts of
   different lengths.
A mismatch refuses the export, naming the prompt, the step and the error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import bushu
from bushu.errors import ExportError, InvalidInput
from bushu.generate.config import CONFIG_FILE, EngineSettings, GenerationConfig, SamplingParams
from bushu.generate.models import architecture
from bushu.generate.package import WEIGHTS, open_core
from bushu.package.manifest import Manifest, Provenance, TensorSpec, Variant
from bushu.package.store import hash_files, staged_package, write_manifest

DEFAULT_TOLERANCE = 1e-4
DEFAULT_PROMPTS = 50
VARIANT = "pytorch-fp32"
OPENVINO_VARIANT = "openvino-fp32"


def _tensor(name: str, datatype: str, axes: list[int | str]) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=[a if isinstance(a, int) else -1 for a in axes],
                      dims=[None if isinstance(a, int) else a for a in axes])


def step_signature(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The decode step's tensors, the cache explicit: what one call of the runner reads and writes."""
    layers, heads, dim = model.cache_shape()
    cache = [layers, "batch", heads, "past", dim]
    inputs = [_tensor("input_ids", "INT64", ["batch", "tokens"]), _tensor("cache_lengths", "INT64", ["batch"]),
              _tensor("past_keys", "FP32", cache), _tensor("past_values", "FP32", cache)]
    if model.is_encoder_decoder:
        inputs.append(_tensor("source_ids", "INT64", ["batch", "source"]))
    present = [layers, "batch", heads, "tokens", dim]
    outputs = [_tensor("logits", "FP32", ["batch", "tokens", model.vocab_size]),
               _tensor("present_keys", "FP32", present), _tensor("present_values", "FP32", present)]
    return inputs, outputs


def pack_hf_generator(
    directory: str | Path, out: str | Path, *, name: str, version: str = "1", force: bool = False,
    prompts: int = DEFAULT_PROMPTS, tolerance: float = DEFAULT_TOLERANCE, new_tokens: int = 12,
    defaults: dict[str, Any] | None = None, seed: int = 0, openvino: bool = False,
    metrics: dict[str, float] | None = None,
) -> Manifest:
    """Pack and verify a local causal LM or encoder-decoder directory (see the module docstring)."""
    root = Path(directory)
    config = json.loads((root / "config.json").read_text())
    task, kind = architecture(config)
    if not (root / "tokenizer.json").is_file():
        raise InvalidInput(f"{root}: no tokenizer.json; bushu needs the fast tokenizer's file to tokenize")
    if prompts < 1:
        raise InvalidInput("--verify-prompts must be at least 1")
    try:
        import transformers
    except ImportError:
        raise InvalidInput("packing a generator needs transformers: pip install 'bushu[generate]'") from None
    auto = transformers.AutoModelForSeq2SeqLM if task == "text2text-generation" else transformers.AutoModelForCausalLM
    source = auto.from_pretrained(str(root), local_files_only=True, attn_implementation="eager").eval()
    generation = _generation_config(source, config, defaults or {})
    with staged_package(out, force=force) as staging:
        (staging / "model").mkdir()
        source.save_pretrained(str(staging / "model"), safe_serialization=True)
        for extra in ("generation_config.json",):  # the checkpoint as transformers re-reads it; bushu reads generation.json
            (staging / "model" / extra).unlink(missing_ok=True)
        (staging / "tokenizer").mkdir()
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (root / f).is_file():
                shutil.copyfile(root / f, staging / "tokenizer" / f)
        (staging / CONFIG_FILE).write_text(generation.model_dump_json(indent=2))
        if not (staging / WEIGHTS).is_file():
            raise ExportError(f"transformers wrote no {WEIGHTS} (sharded checkpoints are not supported yet)")
        draft = Manifest(
            name=name, version=version, task=task, framework="transformers",
            inputs=[_tensor("input_ids", "INT64", ["batch", "tokens"])],
            outputs=[_tensor("logits", "FP32", ["batch", "tokens", int(config["vocab_size"])])],
            variants={VARIANT: Variant(file=WEIGHTS, backend="pytorch")}, default_variant=VARIANT,
            provenance=Provenance(bushu_version=bushu.__version__, source=str(root)), files=hash_files(staging),
            metrics=metrics or {},
        )
        # Every variant is verified on the packed files: PyTorch's decode step (the default), and with
        # `openvino` (decoder-only) OpenVINO's — off by default: `bushu optimize` builds it (and the
        # compressed steps) and keeps it where it is faster; its telemetry is kept off (bushu.offline).
        kinds = {VARIANT: "pytorch"} | ({OPENVINO_VARIANT: "openvino"} if kind == "gpt2" and openvino else {})
        variants, memo = {}, {}
        for key, decode in kinds.items():
            core = open_core(staging, draft.model_copy(update={"variants": {key: Variant(
                file=WEIGHTS, backend="pytorch", options={"decode": decode})}, "default_variant": key}),
                EngineSettings(max_sequences=64))
            error = verify_logits(source, core, tolerance, seed, memo=memo)
            equal = verify_greedy(source, core, prompts, new_tokens, seed, memo=memo)
            variants[key] = Variant(
                file=WEIGHTS, backend="openvino" if decode == "openvino" else "pytorch", max_rel_error={"logits": error},
                metrics={"greedy_prompts_equal": float(equal)}, options={"architecture": kind, "decode": decode},
                notes=(f"bushu's {kind} forward over a slot KV cache, decode step on {decode}; cached logits within "
                       f"{tolerance:g} of transformers', greedy tokens equal generate() on {equal} prompts"))
        inputs, outputs = step_signature(core.model)
        manifest = draft.model_copy(update=dict(
            inputs=inputs, outputs=outputs, variants=variants, default_variant=VARIANT,
            provenance=Provenance(bushu_version=bushu.__version__, source=str(root), weights_file=WEIGHTS,
                                  exporter=f"bushu.generate.models.{kind}"),
            files=hash_files(staging)))
        return write_manifest(staging, Manifest.model_validate(manifest.model_dump()))


def _generation_config(source: Any, config: dict[str, Any], given: dict[str, Any]) -> GenerationConfig:
    eos = source.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if source.config.is_encoder_decoder:
        context = int(given.pop("context", config.get("n_positions") or config.get("max_position_embeddings") or 512))
        values = dict(context=context, max_source_tokens=context, add_special_tokens=True,
                      decoder_start_token_id=int(source.config.decoder_start_token_id))
    else:
        values = dict(context=int(config.get("n_positions") or config.get("max_position_embeddings")))
    try:
        return GenerationConfig(**{**values, "eos_token_ids": eos, **given})
    except ValueError as exc:
        raise InvalidInput(f"generation defaults: {exc}") from None


def _vocab(core: Any) -> int:
    return min(core.model.vocab_size, core.codec.tokenizer.get_vocab_size())


def verify_logits(source: Any, core: Any, tolerance: float, seed: int, steps: int = 6,
                  memo: dict | None = None) -> float:
    """Cached, batched step logits against `transformers`' uncached forward on the same tokens
    (`memo` keeps transformers' answers between the variants of one pack)."""
    memo = {} if memo is None else memo
    import torch

    generator = torch.Generator().manual_seed(seed)
    lengths = [3, 11, 24]
    worst = 0.0
    seqs = [torch.randint(0, _vocab(core), (n + steps,), generator=generator).tolist() for n in lengths]
    ours = _teacher_forced(core, lengths, seqs, steps)
    for i, (n, ids) in enumerate(zip(lengths, seqs)):
        key = ("logits", tuple(ids), n)
        with torch.inference_mode():
            if key in memo:
                ref = memo[key]
            elif core.model.is_encoder_decoder:
                start = [core.config.decoder_start_token_id]
                ref = source(input_ids=torch.tensor([ids[:n]]),
                             decoder_input_ids=torch.tensor([start + ids[n:n + steps - 1]])).logits[0]
            else:
                ref = source(input_ids=torch.tensor([ids])).logits[0, n - 1:n - 1 + steps]
        memo[key] = ref
        for step in range(steps):
            error = float((ours[i][step] - ref[step]).abs().max() / ref[step].abs().max().clamp(min=1e-12))
            worst = max(worst, error)
            if error > tolerance:
                raise ExportError(f"export refused: logits at step {step} of prompt {i} ({n} tokens) differ from "
                                  f"transformers' by a relative error of {error:.3g} (tolerance {tolerance:g})")
    return worst


def _teacher_forced(core: Any, lengths: list[int], seqs: list[list[int]], steps: int) -> list[list[Any]]:
    """Logits per step of each prompt, all prompts prefilled in two chunks then decoded together."""
    import torch

    model, cache = core.model, core.runner.cache
    cache.reserve(len(lengths), max(lengths) + steps + 1, max(lengths) if model.is_encoder_decoder else 0)
    logits: list[list[Any]] = [[] for _ in lengths]
    for row, (n, ids) in enumerate(zip(lengths, seqs)):
        if model.is_encoder_decoder:
            logits[row].append(model.prefill(torch.tensor(ids[:n]), row, 0, cache)[-1])
        else:
            half = n // 2
            if half:
                model.prefill(torch.tensor(ids[:half]), row, 0, cache)
            logits[row].append(model.prefill(torch.tensor(ids[half:n]), row, half, cache)[-1])
    past = [1 if model.is_encoder_decoder else n for n in lengths]
    for step in range(1, steps):
        tokens = torch.tensor([ids[n + step - 1] for n, ids in zip(lengths, seqs)])
        out = core.runner.decode(tokens, torch.tensor([p + step - 1 for p in past]), cache)
        for row in range(len(lengths)):
            logits[row].append(out[row])
    return logits


def verify_greedy(source: Any, core: Any, prompts: int, new_tokens: int, seed: int, memo: dict | None = None) -> int:
    """Greedy tokens through the engine (all prompts batched) against `generate()`, one by one."""
    memo = {} if memo is None else memo
    import torch

    from bushu.generate.sequence import Sequence

    generator = torch.Generator().manual_seed(seed + 1)
    longest = max(2, min(48, core.config.context - new_tokens - 1))
    lengths = [1 + (i * 7) % longest for i in range(prompts)]
    batch = [torch.randint(0, _vocab(core), (n,), generator=generator).tolist() for n in lengths]
    params = SamplingParams(max_new_tokens=new_tokens)
    seqs = core.run_to_completion([Sequence(p, params) for p in batch])
    eos = core.config.eos_token_ids
    for i, (prompt, seq) in enumerate(zip(batch, seqs)):
        key = ("greedy", tuple(prompt), new_tokens)
        if key not in memo:
            with torch.inference_mode():
                kwargs = dict(max_new_tokens=new_tokens, do_sample=False, num_beams=1,
                              pad_token_id=eos[0] if eos else 0, eos_token_id=eos or None)
                memo[key] = source.generate(torch.tensor([prompt]), attention_mask=torch.ones(
                    1, len(prompt), dtype=torch.long), **kwargs)[0].tolist()
        out = memo[key]
        expected = out[1:] if core.model.is_encoder_decoder else out[len(prompt):]
        expected = [t for t in expected if t not in eos]
        if expected != seq.output:
            step = next((j for j, (a, b) in enumerate(zip(expected, seq.output)) if a != b),
                        min(len(expected), len(seq.output)))
            raise ExportError(
                f"export refused: greedy tokens of prompt {i} ({len(prompt)} tokens) differ from transformers' "
                f"generate() at step {step}: expected {expected[step:step + 3]}, got {seq.output[step:step + 3]}")
    return prompts
