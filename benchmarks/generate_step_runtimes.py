"""Which runtime runs GPT-2-small's decode step fastest on this CPU: ONNX Runtime, OpenVINO or
PyTorch (bushu's slot-cache forward), at batch 1, 16 and 64 with 192 cached positions.

The step is exported with its cache explicit (past keys/values in, this token's keys/values out)
and timed interleaved across runtimes, median of `--repeats` calls each. Run:
    python benchmarks/generate_step_runtimes.py [--workdir /tmp/bushu-gen] [--past 192] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.generate_models import gpt2_small  # noqa: E402


class Step(torch.nn.Module):
    """bushu's GPT-2 forward for one token per row, the cache as plain inputs and outputs."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids, lengths, past_k, past_v):
        m, n, past = self.m, ids.shape[0], past_k.shape[3]
        mask = torch.cat([torch.arange(past)[None, :] < lengths[:, None], torch.ones(n, 1, dtype=torch.bool)], 1)
        mask = mask[:, None, None, :]
        new_k, new_v = [], []

        def attend(layer, q, k, v):
            new_k.append(k)
            new_v.append(v)
            keys = torch.cat([past_k[layer], k[:, :, None]], 2)
            values = torch.cat([past_v[layer], v[:, :, None]], 2)
            out = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=mask)
            return out.reshape(n, m.width)

        logits = m._blocks(m.wte[ids] + m.wpe[lengths], attend) @ m.lm_head.T
        return logits, torch.stack(new_k), torch.stack(new_v)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bushu-gen"))
    parser.add_argument("--past", type=int, default=192)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import json

    import onnxruntime as ort
    import openvino as ov

    from bushu.generate.kv_cache import KVCache
    from bushu.generate.models import load_model

    src = gpt2_small(args.workdir)
    model = load_model(json.loads((src / "config.json").read_text()), src / "model.safetensors")
    layers, heads, dim = model.cache_shape()
    onnx_path = args.workdir / "gpt2-step.onnx"
    if not onnx_path.is_file():
        n = 2
        example = (torch.zeros(n, dtype=torch.long), torch.full((n,), 3), torch.zeros(layers, n, heads, 4, dim),
                   torch.zeros(layers, n, heads, 4, dim))
        torch.onnx.export(Step(model), example, str(onnx_path), dynamo=False, input_names=["ids", "lengths", "past_k", "past_v"],
                          output_names=["logits", "k", "v"], opset_version=17,
                          dynamic_axes={"ids": {0: "b"}, "lengths": {0: "b"}, "past_k": {1: "b", 3: "t"},
                                        "past_v": {1: "b", 3: "t"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    core = ov.Core()
    # f32 explicitly: on AVX-512 BF16 CPUs OpenVINO defaults to bf16, which would not be equal precision
    compiled = core.compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        ids = np.random.randint(0, 50000, batch).astype(np.int64)
        lengths = np.full(batch, args.past, dtype=np.int64)
        past = np.random.randn(layers, batch, heads, args.past, dim).astype(np.float32) * 0.1
        feeds = {"ids": ids, "lengths": lengths, "past_k": past, "past_v": past}
        cache = KVCache(layers, heads, dim, dtype=torch.float32, max_slots=batch, max_length=args.past + 1)
        cache.reserve(batch, args.past + 1)
        cache.k[:, :, :, :args.past] = torch.from_numpy(past)
        cache.v[:, :, :, :args.past] = torch.from_numpy(past)
        runs = {
            "PyTorch (bushu slot cache, in place)": lambda: model.decode(torch.from_numpy(ids), torch.from_numpy(lengths), cache),
            "ONNX Runtime (cache in/out)": lambda: session.run(None, feeds),
            "OpenVINO (cache in/out)": lambda: compiled(feeds),
        }
        times = {k: [] for k in runs}
        for fn in runs.values():
            fn()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["PyTorch (bushu slot cache, in place)"])
        for name, values in times.items():
            median = statistics.median(values)
            rows.append(f"| {batch} | {name} | {median * 1000:.1f} | {batch / median:.0f} | {base / median:.2f}× |")
    print(f"GPT-2-small decode step, {args.past} cached positions, {args.threads} threads, median of {args.repeats}\n")
    print("| batch | runtime | ms/step | tokens/s | speed vs PyTorch |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
