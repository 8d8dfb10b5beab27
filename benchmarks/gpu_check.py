"""GPU check for the PyTorch backend: fidelity of every GPU variant, raw compiled throughput,
and throughput served by bushu over loopback — one table, ratios in the same run.

    python benchmarks/gpu_check.py --out $OUT            # on the GPU machine (see gpu_run.sh)
    python benchmarks/gpu_check.py --device cpu --quick  # the same code path, small, on a CPU

For the seed CNN and a MiniLM-shaped encoder (random weights): each variant (fp32, bf16, fp16,
bf16 + torch.compile with CUDA graphs) is compared with fp32 eager on the same inputs; the
compiled bf16 model is timed raw at a fixed batch; then `bushu serve` runs it and concurrent
clients send batched binary-tensor requests; served items/s over raw items/s is the ratio.
Before that, `bushu optimize --target <device>` searches each package's GPU variants (PyTorch
eager and compiled in every precision, ORT's GPU providers where installed) on random inputs,
and its table is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    from bushu.export.compare import relative_error as rel

    return rel(got, want)


def make_packages(workdir: Path, quick: bool) -> dict[str, tuple[Path, dict[str, np.ndarray], int]]:
    """(package, one request's inputs, rows per request) for each model."""
    import torch

    from bushu.apps.vision.model import SeedCNN
    from bushu.export import pack_module, parse_input_spec

    torch.manual_seed(0)
    packages = {}
    cnn = workdir / "cnn"
    pack_module(SeedCNN(), [parse_input_spec("image:FP32:batch,3,32,32")], cnn, name="cnn",
                output_names=["logits"], source="bushu.apps.vision.model:SeedCNN")
    rng = np.random.default_rng(0)
    packages["seed CNN"] = (cnn, {"image": rng.standard_normal((64, 3, 32, 32)).astype(np.float32)}, 64)

    from benchmarks.gpu_models import MiniLMShaped

    seq = 32 if quick else 128
    encoder = workdir / "minilm"
    pack_module(MiniLMShaped(), [parse_input_spec("input_ids:INT64:batch,sequence"),
                                 parse_input_spec("attention_mask:INT64:batch,sequence")],
                encoder, name="minilm", output_names=["pooled"], source="benchmarks.gpu_models:MiniLMShaped",
                value_ranges={"input_ids": (0, 30522), "attention_mask": (1, 2)}, tolerance=1e-3)
    rows = 16 if quick else 64
    packages["MiniLM-shaped"] = (encoder, {
        "input_ids": rng.integers(0, 30522, (rows, seq)).astype(np.int64),
        "attention_mask": np.ones((rows, seq), np.int64),
    }, rows)
    return packages


def add_variants(package: Path, device: str, buckets: list[int]) -> list[str]:
    from bushu.package import Variant, read_manifest
    from bushu.package.store import write_manifest

    manifest = read_manifest(package)
    weights = manifest.provenance.weights_file
    variants = {
        "torch-fp32": Variant(file=weights, backend="pytorch", device=device, precision="fp32"),
        "torch-bf16": Variant(file=weights, backend="pytorch", device=device, precision="bf16"),
        "torch-fp16": Variant(file=weights, backend="pytorch", device=device, precision="fp16"),
        "torch-bf16-compiled": Variant(file=weights, backend="pytorch", device=device, precision="bf16",
                                       options={"compile": True, "buckets": buckets}),
    }
    write_manifest(package, manifest.model_copy(update={
        "variants": {**manifest.variants, **variants}, "default_variant": "torch-bf16-compiled"}))
    return list(variants)


def raw_throughput(model, inputs: dict[str, np.ndarray], rows: int, batch: int, seconds: float) -> float:
    """Items/s of the loaded model at a fixed batch, inputs already on the device."""
    import torch

    reps = max(1, batch // rows)
    big = {k: np.concatenate([v] * reps) for k, v in inputs.items()}
    tensors = [model._to_device(big[s.name]) for s in model.manifest.inputs]
    module = model._module
    sync = torch.cuda.synchronize if model.device == "cuda" else (lambda: None)

    def timed() -> float:  # on the thread that owns the compiled CUDA graphs, as the server does
        with torch.inference_mode():
            for _ in range(3):
                module(*tensors)
            sync()
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                module(*tensors)
                count += 1
            sync()
        return count * reps * rows / (time.perf_counter() - start)

    return model.on_owner(timed)


def binary_body(inputs: dict[str, np.ndarray]) -> tuple[bytes, int]:
    import orjson

    header = orjson.dumps({"inputs": [
        {"name": k, "datatype": "INT64" if v.dtype == np.int64 else "FP32", "shape": list(v.shape),
         "parameters": {"binary_data_size": v.nbytes}} for k, v in inputs.items()],
        "outputs": [{"name": "logits" if "image" in inputs else "pooled", "parameters": {"binary_data": True}}]})
    return header + b"".join(np.ascontiguousarray(v).tobytes() for v in inputs.values()), len(header)


async def drive(url: str, model: str, body: bytes, header_len: int, rows: int, clients: int,
                seconds: float) -> tuple[float, int]:
    import aiohttp

    done, errors = 0, 0
    headers = {"Inference-Header-Content-Length": str(header_len), "Content-Type": "application/octet-stream"}
    deadline = time.perf_counter() + seconds

    async def client(session):
        nonlocal done, errors
        while time.perf_counter() < deadline:
            async with session.post(f"{url}/v2/models/{model}/infer", data=body, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    done += rows
                else:
                    errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return done / (time.perf_counter() - start), errors


def served_throughput(package: Path, name: str, inputs, rows: int, clients: int, seconds: float,
                      max_batch: int) -> tuple[float, int]:
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]  # the server imports benchmarks.gpu_models
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    proc = subprocess.Popen([sys.executable, "-m", "bushu.cli", "serve", str(package), "--port", "0",
                             "--max-batch-size", str(max_batch), "--max-queue-delay-ms", "2", "--instances", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        url = proc.stdout.readline().split()[-1]
        import httpx

        for _ in range(3000):
            try:
                if httpx.get(url + "/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read())
            time.sleep(0.1)
        body, header_len = binary_body(inputs)
        asyncio.run(drive(url, name, body, header_len, rows, clients, 2))  # warm-up
        return asyncio.run(drive(url, name, body, header_len, rows, clients, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def optimize_check(package: Path, inputs: dict[str, np.ndarray], device: str, quick: bool) -> str:
    """`bushu optimize --target device` on the package: the report's table and its choice."""
    from bushu.optimize import optimize, preset
    from bushu.optimize.report import table

    rng = np.random.default_rng(1)
    rows = 128 if quick else 512
    picks = rng.integers(0, len(next(iter(inputs.values()))), rows)
    data = {k: v[picks] for k, v in inputs.items()}
    if "image" in data:  # distinct images, not repeats of the request's 64
        data["image"] = rng.standard_normal(data["image"].shape).astype(np.float32)
    else:
        data["input_ids"] = rng.integers(0, 30522, data["input_ids"].shape).astype(np.int64)
    eval_file = package.parent / f"{package.name}-eval.npz"
    np.savez(eval_file, **data)
    families = ("pytorch",) if device == "cpu" else None
    config = preset("quick" if quick else "default", target=device, families=families, serving_batch=64,
                    rounds=5 if quick else 10, calibration_samples=32)
    result = optimize(package, package.parent / f"{package.name}-optimized", config, eval_file=eval_file,
                      log=lambda m: print("  " + m, flush=True))
    return f"{table(result.rows, result.metric.name, result.choice, result.baseline)}\n\nchose {result.choice}: {result.why}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs (a CPU smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu_check.md")
    parser.add_argument("--skip-optimize", action="store_true", help="do not run `bushu optimize --target` first")
    args = parser.parse_args()
    import bushu

    seconds = 2 if args.quick else 8
    batch = 64 if args.quick else 512
    buckets = [16, 64] if args.quick else [64, 128, 256, 512]
    workdir = Path(tempfile.mkdtemp(prefix="bushu-gpu-"))
    lines = ["| model | variant | max rel. err vs fp32 eager | top-1 / min cos | raw items/s | served items/s | served/raw |",
             "|---|---|---|---|---|---|---|"]
    searches = []
    try:
        for label, (package, inputs, rows) in make_packages(workdir, args.quick).items():
            if not args.skip_optimize:
                searches.append(f"### bushu optimize --target {args.device}: {label}\n\n"
                                + optimize_check(package, inputs, args.device, args.quick))
                print(searches[-1], flush=True)
            variants = add_variants(package, args.device, buckets)
            reference = bushu.load(package, "torch-fp32").infer(inputs)
            (out_name, want), = reference.items()
            for variant in variants:
                model = bushu.load(package, variant)
                got = model.infer(inputs)[out_name]
                err = relative_error(got, want)
                if label == "seed CNN":
                    agree = f"top-1 {(got.argmax(1) == want.argmax(1)).mean():.3f}"
                else:
                    agree = f"min cos {float(np.min(np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)))):.5f}"
                raw = served = ratio = ""
                if variant == "torch-bf16-compiled":
                    raw_rate = raw_throughput(model, inputs, rows, batch, seconds)
                    served_rate, errors = served_throughput(package, package.name, inputs, rows, 32, seconds, batch)
                    raw, served = f"{raw_rate:,.0f}", f"{served_rate:,.0f}" + (f" ({errors} errors)" if errors else "")
                    ratio = f"{served_rate / raw_rate:.2f}"
                lines.append(f"| {label} | {variant} | {err:.2e} | {agree} | {raw} | {served} | {ratio} |")
                print(lines[-1], flush=True)
                model.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = "\n".join(lines) + "".join(f"\n\n{s}" for s in searches)
    print("\n" + table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
