"""The decode step on OpenVINO, the cache staying where it is.

Measured here (benchmarks/generate_step_runtimes.py, GPT-2-small, one thread, f32): OpenVINO
runs the bare decode step 1.1–1.6× faster than PyTorch at batch 1–64, ONNX Runtime 1.05–1.45×;
served end to end on the loaded 2-core machine it was not faster (24 vs 28–46 tokens/s at 16
streams), so it is the `openvino-fp32` variant, verified like the default, not the default.
The fp32 step is converted at load from bushu's own torch forward (no second weights file); a
weight-compressed step (int8/int4, `bushu.optimize.generation`) is an IR file in the package,
read as it is. The whole cache tensor is handed over by shared memory (no
copy): the graph reads rows 0..n-1 over the full capacity (masked by each row's length), never
copying them, and returns this token's keys and values, which are written into the cache in place. Prefill, cache
moves and sampling stay in PyTorch.
"""

from __future__ import annotations

import torch


class DecodeStep(torch.nn.Module):
    """The step as a graph: the cache in (read, never copied), this token's keys and values out."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids, lengths, past_k, past_v):
        m, n, capacity = self.m, ids.shape[0], past_k.shape[3]
        hidden = torch.finfo(torch.float32).min
        blocked = torch.where(torch.arange(capacity)[None, :] < lengths[:, None], 0.0, hidden)[:, None, None, :]
        scale = m.head_dim ** -0.5
        new_k, new_v = [], []

        def attend(layer, q, k, v):
            # The cached keys are read where they lie: appending this token's key to them (a concat)
            # would copy the whole cache every layer of every step. Its score joins the cached ones
            # instead, and its value is weighted in after.
            new_k.append(k)
            new_v.append(v)
            q = q[:, :, None] * scale  # [n, heads, 1, dim]
            cached = q @ past_k[layer, :n].transpose(-1, -2) + blocked  # [n, heads, 1, capacity]
            own = (q * k[:, :, None]).sum(-1, keepdim=True)  # [n, heads, 1, 1]
            weights = torch.softmax(torch.cat([cached, own], -1), -1)
            out = weights[..., :capacity] @ past_v[layer, :n] + weights[..., capacity:] * v[:, :, None]
            return out.reshape(n, m.width)

        positions = lengths.clamp(max=m.max_positions - 1)
        logits = m._blocks(m.wte[ids] + m.wpe[positions], attend) @ m.lm_head.T
        return logits, torch.stack(new_k, 1), torch.stack(new_v, 1)  # [n, layers, heads, dim]


def _openvino():
    try:
        import openvino
    except ImportError:
        from bushu.errors import InvalidInput

        raise InvalidInput("the openvino variants need OpenVINO: pip install 'bushu[optimize]'") from None
    return openvino


def convert_step(model, cache):
    """bushu's decode step as an OpenVINO model: (ids, lengths, past keys, past values) → (logits,
    this token's keys, values); the cache's rows and length dynamic."""
    ov = _openvino()
    from bushu.offline import no_openvino_telemetry

    if model.is_encoder_decoder:
        raise ValueError("the OpenVINO decode step covers decoder-only models")
    no_openvino_telemetry()  # ov.convert_model reports usage otherwise
    layers, heads, dim = model.cache_shape()
    example = (torch.zeros(2, dtype=torch.long), torch.full((2,), 3), cache.k, cache.v)
    shape = ov.PartialShape([layers, -1, heads, -1, dim])
    with torch.inference_mode():
        return ov.convert_model(DecodeStep(model).eval(), example_input=example,
                                input=[ov.PartialShape([-1]), ov.PartialShape([-1]), shape, shape])


class OpenVinoDecode:
    def __init__(self, model, cache, threads: int = 0, step_file=None, activations: str = "f32") -> None:
        """`step_file`: a saved (e.g. weight-compressed) step IR; without it the fp32 step is converted.
        `activations`: "f32", or "bf16" for a variant that computes in bf16."""
        core = _openvino().Core()
        converted = core.read_model(str(step_file)) if step_file else convert_step(model, cache)
        # the precision always explicit: on CPUs with AVX-512 BF16 OpenVINO would otherwise run in bf16
        config = {"INFERENCE_PRECISION_HINT": activations, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.request = core.compile_model(converted, "CPU", config).create_infer_request()

    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor, cache) -> torch.Tensor:
        results = self.request.infer([ids.numpy(), lengths.numpy(), cache.k.numpy(), cache.v.numpy()],
                                     share_inputs=True)
        return write_back(cache, lengths, *(torch.from_numpy(results[i]) for i in range(3)))


def write_back(cache, lengths: torch.Tensor, logits: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """This token's keys and values into each row's next position; the logits, owned."""
    rows = torch.arange(lengths.shape[0])
    cache.k[:, rows, :, lengths] = k  # (advanced indices first: [n, layers, heads, dim])
    cache.v[:, rows, :, lengths] = v
    return logits.clone()
