"""Compressed generators (issue 17 part 4): `bushu optimize` on a generation package, every
variant's perplexity (or greedy agreement) on held-out prompts and its output tokens/s through
the serving engine, as a ratio of the fp32 variant's in the same run.

--model lm: the language model of the generation apps (`bushu train lm`; `--package` reuses a
trained one), evaluated on the first `--prompts` of its held-out texts (never trained on).
--model gpt2-small: the 124 M GPT-2-small-architecture model of generate_vs_peers.py (random
weights), evaluated on `--prompts` of the same held-out texts as tokens of its word-level vocabulary.
    python benchmarks/generate_compress.py --model lm [--package /tmp/lmfull/lm] [--budget 2%]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def lm_package(workdir: Path, given: Path | None) -> Path:
    if given:
        return given
    out = workdir / "lm"
    if not (out / "bushu.json").is_file():
        subprocess.run([sys.executable, "-m", "bushu.cli", "train", "lm", "-o", str(out), "--force"], check=True)
    return out


def gpt2_small_package(workdir: Path) -> Path:
    from benchmarks.generate_models import gpt2_small

    src = gpt2_small(workdir)
    out = workdir / "gpt2-small-pkg"
    if not (out / "bushu.json").is_file():
        subprocess.run([sys.executable, "-m", "bushu.cli", "pack", str(src), "-o", str(out), "--name", "gpt2-small",
                        "--verify-prompts", "8", "--force"], check=True)
    return out


def held_out_prompts(count: int, words: bool) -> list[str]:
    """Held-out texts of the LM's split; as "t<id>" words for the word-level GPT-2-small vocabulary."""
    from bushu.apps.lm.data import load_texts

    texts = [" ".join(t.split()) for t in load_texts().test_texts if t.strip()][:count]
    if not words:
        return texts
    return [" ".join(f"t{sum(map(ord, w)) * 7919 % 50256}" for w in t.split()[:96]) for t in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("lm", "gpt2-small"), default="lm")
    parser.add_argument("--package", type=Path, help="the package (default: train the LM or pack GPT-2-small into --workdir)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bushu-gen"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--budget", default="2%")
    parser.add_argument("--metric", default="perplexity")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from bushu.optimize.config import parse_budget
    from bushu.optimize.generation import optimize_generator, report

    args.workdir.mkdir(parents=True, exist_ok=True)
    package = args.package or (lm_package(args.workdir, None) if args.model == "lm" else gpt2_small_package(args.workdir))
    eval_file = args.workdir / f"{args.model}-held-out.txt"
    eval_file.write_text("\n".join(held_out_prompts(args.prompts, args.model == "gpt2-small")) + "\n")
    result = optimize_generator(package, args.workdir / f"{args.model}-compressed", eval_file=eval_file,
                                budget=parse_budget(args.budget), metric=args.metric, threads=args.threads,
                                streams=args.streams, new_tokens=args.new_tokens, rounds=args.rounds, force=True,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{args.model}: {package}, {args.prompts} held-out prompts, {args.threads} thread(s)\n")
    print(report(result))


if __name__ == "__main__":
    main()
