"""GPU generation check: bushu's engine with the PyTorch backend in bf16 (static cache, the
decode step as CUDA graphs) against `transformers` `generate()` in bf16, at `--streams`
concurrent requests of 128-token prompts and 128 new tokens, greedy, every answer full length.

    python benchmarks/gpu_generate.py --out $OUT     # on the GPU machine (gpu_run.sh runs it)
    python benchmarks/gpu_generate.py --device cpu --streams 4 --new-tokens 8 --prompt-tokens 16  # the code path, tiny, here

The model is GPT-2-small architecture with random weights (benchmarks/generate_models.py), packed
by `bushu pack` there. bushu runs in-process (EngineCore: scheduler, slot cache, sampler — the
server's engine without HTTP); transformers runs the same prompts as one static batch. Also
reported: how many greedy answers bushu-bf16 and transformers-bf16 agree on (bf16 rounding may
flip near-ties, so this is a figure, not a gate; fp32 equality is what the tests and pack check).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.generate_models import gpt2_small, prompts  # noqa: E402


def bushu_run(package: Path, batch: list[list[int]], new_tokens: int, device: str, graphs: bool) -> tuple[float, list]:
    import torch

    from bushu.generate.config import EngineSettings, SamplingParams
    from bushu.generate.package import open_core
    from bushu.generate.sequence import Sequence
    from bushu.package.store import verify_package

    streams = len(batch)
    settings = EngineSettings(max_sequences=streams, max_tokens_in_flight=streams * (len(batch[0]) + new_tokens + 1),
                              prefill_chunk=4096, precision="bf16" if device == "cuda" else "fp32", device=device,
                              static_cache=True, cuda_graphs=graphs)
    core = open_core(package, verify_package(package), settings)
    params = SamplingParams(max_new_tokens=new_tokens, ignore_eos=True)
    core.run_to_completion([Sequence(p, SamplingParams(max_new_tokens=4, ignore_eos=True)) for p in batch[:2]])
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    seqs = core.run_to_completion([Sequence(p, params) for p in batch])
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, [s.output for s in seqs]


def transformers_run(src: Path, batch: list[list[int]], new_tokens: int, device: str) -> tuple[float, list]:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=dtype).to(device).eval()
    ids = torch.tensor(batch, device=device)
    kwargs = dict(do_sample=False, pad_token_id=50256)
    with torch.inference_mode():
        model.generate(ids[:2], attention_mask=torch.ones_like(ids[:2]), max_new_tokens=4, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start, out[:, ids.shape[1]:].tolist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("out/gpu"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bushu-gen-gpu"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    src = gpt2_small(args.workdir)
    package = args.workdir / "pkg"
    if not (package / "bushu.json").is_file():
        subprocess.run([sys.executable, "-m", "bushu.cli", "pack", str(src), "-o", str(package), "--name", "gpt2-small",
                        "--verify-prompts", "4", "--force"], check=True)
    batch = prompts(args.streams, args.prompt_tokens)
    tokens = args.streams * args.new_tokens
    rows = []
    t_hf, hf_out = transformers_run(src, batch, args.new_tokens, args.device)
    rows.append(("transformers generate() (static batch)", t_hf, None))
    for graphs in ((False, True) if args.device == "cuda" else (False,)):
        try:
            t, out = bushu_run(package, batch, args.new_tokens, args.device, graphs)
        except Exception as exc:  # a capture failure is reported, the other rows still stand
            print(f"bushu graphs={graphs} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        agree = sum(a == b for a, b in zip(out, hf_out))
        rows.append((f"bushu engine, static cache{', CUDA graphs' if graphs else ''}", t, agree))
    precision = "bf16" if args.device == "cuda" else "fp32"
    lines = [f"GPT-2-small, {args.streams} streams, {args.prompt_tokens}-token prompts, {args.new_tokens} new tokens, "
             f"greedy, {precision}, {args.device}", "",
             "| engine | seconds | output tokens/s | ÷ transformers | answers equal to transformers' |",
             "|---|---:|---:|---:|---:|"]
    for name, seconds, agree in rows:
        equal = "-" if agree is None else f"{agree}/{args.streams}"
        lines.append(f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} | {t_hf / seconds:.2f}× | {equal} |")
    table = "\n".join(lines)
    print(table)
    (args.out / "gpu_generate.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
