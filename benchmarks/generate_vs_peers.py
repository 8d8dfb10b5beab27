"""bushu's generation against what a user would pick instead, on one machine, one model.

The model: GPT-2-small architecture (`GPT2Config()`, 124 M parameters), random weights saved
once (benchmarks/generate_models.py). The load: `--streams` concurrent requests of
`--prompt-tokens` token prompts, `--new-tokens` new tokens each, greedy, every answer its full
length (no early end of sequence). Rows:
- bushu: `bushu serve` of the packed model, over HTTP (/v1/completions, streamed; TTFT and ITL
  per token from the stream), continuous batching;
- transformers: `generate()` on static batches of the same requests (TTFT: the batch's prefill,
  timed as generate() of one token; ITL: the rest of the batch's time per token), in fp32 (the
  ratio's baseline) and in bf16 (the equal-precision peer of a bf16 bushu variant);
- CTranslate2 fp32 and int8 (its `Generator.generate_batch`, static batches the same way);
- onnxruntime-genai, openvino-genai: where they install and run (the script says why not).
Default: a short run (16 streams, 32 new tokens); `--full` is the issue's 16 and 64 streams,
128 + 128 tokens. Prints a Markdown table with each row's tokens/s as a ratio of transformers'.
`--variants` serves several variants of `--package` one after another (e.g. pytorch-bf16 and
openvino-int8 from benchmarks/generate_compress.py's output).
    python benchmarks/generate_vs_peers.py [--full] [--threads 2] [--workdir /tmp/bushu-gen] [--variants ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.generate_models import gpt2_small, prompts  # noqa: E402


def row(name: str, streams: int, tokens: int, seconds: float, ttft: list[float], itl: list[float]) -> dict:
    pct = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q / 100 * len(xs)))] * 1000 if xs else float("nan")  # noqa: E731
    return {"name": name, "streams": streams, "tokens_per_s": tokens / seconds, "ttft_p50": pct(ttft, 50),
            "ttft_p99": pct(ttft, 99), "itl_p50": pct(itl, 50), "itl_p99": pct(itl, 99)}


def static_batches(name: str, generate, batch: list[list[int]], streams: int, new_tokens: int) -> dict:
    """A peer without a server: the requests in static batches of `streams`, timed per batch."""
    ttft, itl, tokens, total = [], [], 0, 0.0
    for i in range(0, len(batch), streams):
        group = batch[i:i + streams]
        start = time.perf_counter()
        generate(group, 1)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        produced = generate(group, new_tokens)
        elapsed = time.perf_counter() - start
        assert produced == len(group) * new_tokens, f"{name}: {produced} tokens, expected {len(group) * new_tokens}"
        total += elapsed
        tokens += produced
        ttft += [prefill] * len(group)
        itl += [(elapsed - prefill) / max(1, new_tokens - 1)] * len(group) * (new_tokens - 1)
    return row(name, streams, tokens, total, ttft, itl)


def transformers_peer(src: Path, threads: int, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=getattr(torch, dtype)).eval()

    def generate(group: list[list[int]], new_tokens: int) -> int:
        ids = torch.tensor(group)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=50256)
        return (out.shape[1] - ids.shape[1]) * out.shape[0]

    return generate


def ctranslate2_peer(src: Path, workdir: Path, quantization: str, threads: int):
    import ctranslate2

    out = workdir / f"ct2-{quantization}"
    if not (out / "model.bin").is_file():
        ctranslate2.converters.TransformersConverter(str(src)).convert(
            str(out), quantization=None if quantization == "fp32" else quantization, force=True)
    generator = ctranslate2.Generator(str(out), device="cpu", intra_threads=threads, inter_threads=1,
                                      compute_type="float32" if quantization == "fp32" else quantization)

    def generate(group: list[list[int]], new_tokens: int) -> int:
        tokens = [[f"t{t}" for t in p] for p in group]
        results = generator.generate_batch(tokens, max_length=new_tokens, min_length=new_tokens, sampling_topk=1,
                                           include_prompt_in_result=False, beam_size=1)
        return sum(len(r.sequences_ids[0]) for r in results)

    return generate


def serving_variant(package: Path, variant: str, workdir: Path) -> Path:
    """The package with `variant` as its default (what `bushu serve` runs): hard links to its files,
    a manifest of its own."""
    from bushu.package.store import read_manifest, write_manifest

    manifest = read_manifest(package)
    if variant == manifest.default_variant:
        return package
    if variant not in manifest.variants:
        raise SystemExit(f"{package} has no variant {variant!r}; it has {sorted(manifest.variants)} "
                         "(compressed ones: benchmarks/generate_compress.py --model gpt2-small)")
    out = workdir / f"serve-{variant}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    subprocess.run(["cp", "-al", str(package), str(out)], check=True)
    (out / "bushu.json").unlink()  # a hard link: the source's manifest stays as it is
    write_manifest(out, manifest.model_copy(update={"default_variant": variant}))
    return out


def bushu_row(package: Path, batch: list[list[int]], streams: int, new_tokens: int, threads: int,
              variant: str = "") -> dict:
    from bushu.bench.generation import run_generation
    from bushu.bench.process import bushu_serve

    with bushu_serve([package], "--threads", str(threads), "--max-sequences", str(max(streams, 1)),
                     "--max-tokens-in-flight", str(streams * (len(batch[0]) + new_tokens + 1))) as server:
        run_generation(server.url, "gpt2-small", batch[:2], new_tokens=4, streams=2)  # warm-up
        result = run_generation(server.url, "gpt2-small", batch, new_tokens=new_tokens, streams=streams)
    if result.errors:
        raise RuntimeError(f"bushu: {result.errors[:3]}")
    return row(f"bushu {variant} (HTTP, continuous batching)".replace("  ", " "), streams, result.tokens, result.seconds, result.ttft, result.itl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bushu-gen"))
    parser.add_argument("--full", action="store_true", help="16 and 64 streams, 128-token prompts, 128 new tokens")
    parser.add_argument("--streams", default="16")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="measure every row this many times, rotating "
                        "through them; report each row's median round")
    parser.add_argument("--peers", default="bushu,transformers,transformers-bf16,ct2-fp32,ct2-int8,ort-genai,ov-genai")
    parser.add_argument("--package", type=Path, help="the bushu package (default: GPT-2-small packed into --workdir); "
                        "the output of generate_compress.py holds the compressed variants")
    parser.add_argument("--variants", default="", help="bushu rows: these variants of --package, each served as "
                        "the default (e.g. pytorch-fp32,pytorch-bf16,openvino-int8)")
    args = parser.parse_args()
    if args.full:
        args.streams, args.new_tokens = "16,64", 128
    src = gpt2_small(args.workdir)
    package = args.package or args.workdir / "gpt2-small-pkg"
    if not (package / "bushu.json").is_file():
        subprocess.run([sys.executable, "-m", "bushu.cli", "pack", str(src), "-o", str(package), "--name",
                        "gpt2-small", "--verify-prompts", "8", "--force"], check=True)
    peers = args.peers.split(",")
    notes: list[str] = []
    runs = []  # (streams, how to measure one row), measured in rounds that rotate through all of them
    for streams in (int(s) for s in args.streams.split(",")):
        batch = prompts(streams, args.prompt_tokens)
        if "bushu" in peers:
            for variant in args.variants.split(",") if args.variants else [""]:
                served = serving_variant(package, variant, args.workdir) if variant else package
                runs.append(lambda served=served, batch=batch, streams=streams, variant=variant: bushu_row(
                    served, batch, streams, args.new_tokens, args.threads, variant))
        for peer, name, dtype in (("transformers", "transformers generate() (static batch)", "float32"),
                                  ("transformers-bf16", "transformers bf16 generate() (static batch)", "bfloat16")):
            if peer in peers:
                runs.append(lambda name=name, dtype=dtype, batch=batch, streams=streams: static_batches(
                    name, transformers_peer(src, args.threads, dtype), batch, streams, args.new_tokens))
        for quantization in ("fp32", "int8"):
            if f"ct2-{quantization}" in peers:
                runs.append(lambda quantization=quantization, batch=batch, streams=streams: static_batches(
                    f"CTranslate2 {quantization} (static batch)",
                    ctranslate2_peer(src, args.workdir, quantization, args.threads), batch, streams, args.new_tokens))
    measured: list[list[dict]] = [[] for _ in runs]
    for round_ in range(args.rounds):
        print(f"-- round {round_ + 1} of {args.rounds}", file=sys.stderr, flush=True)
        for i, run in enumerate(runs):
            measured[i].append(run())
            print(measured[i][-1], file=sys.stderr, flush=True)
    # each row: its round with the median tokens/s (the machine is shared: rounds see different loads)
    rows = [sorted(m, key=lambda r: r["tokens_per_s"])[(len(m) - 1) // 2] for m in measured]
    if "ort-genai" in peers:
        notes.append("onnxruntime-genai 0.18.0 installs; its model builder was not run here (see the report)")
    if "ov-genai" in peers:
        notes.append("openvino-genai 2026.4.1 installs, but its LLMPipeline needs a stateful OpenVINO IR made by "
                     "optimum-intel's exporter, which is not installed here: no row")
    print(f"\nGPT-2-small (124 M, random weights), {args.prompt_tokens}-token prompts, {args.new_tokens} new tokens, "
          f"greedy, {args.threads} threads, median of {args.rounds} rotating round(s)\n")
    print("| streams | server | output tokens/s | ÷ transformers | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = next((b for b in rows if b["streams"] == r["streams"] and b["name"].startswith("transformers generate")),
                    None)
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×" if base else "-"
        print(f"| {r['streams']} | {r['name']} | {r['tokens_per_s']:.1f} | {ratio} | {r['ttft_p50']:.0f} | "
              f"{r['ttft_p99']:.0f} | {r['itl_p50']:.1f} | {r['itl_p99']:.1f} |")
    for note in notes:
        print(f"\n- {note}")


if __name__ == "__main__":
    main()
