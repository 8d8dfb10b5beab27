"""The model's step on OpenVINO (decode steps and prompt chunks alike), the cache staying where it is.

The fp32 step is converted at load from bushu's own torch forward (no second weights file); a
weight-compressed step (int8/int4, `bushu.optimize.generation`) is an IR file in the package,
read as it is. Each layer's cached keys and values are handed over as views of the cache by
shared memory (no copy); the graph returns the new tokens' keys and values, which are written
into the cache in place. Cache moves and sampling stay in PyTorch.

Why the prefill runs here too: on this project's AMD CPU, PyTorch's fp32 matrix products (MKL)
reached 76 GFLOPS against OpenVINO's 167 (2048×768 by 768×3072, one thread), and a compressed
variant then computes every token at its own precision.
"""

from __future__ import annotations

import torch


class DecodeStep(torch.nn.Module):
    """The step as a graph: `t` new tokens in each of n rows (ids [n, t]) after each row's
    `lengths` cached positions; the last new token's logits and every new token's keys and
    values out. A decode step is t = 1 over the running rows; a prompt chunk is n = 1, t = its
    length, over its slot's row.

    Each layer's cached keys and values come in as inputs of their own, [n, heads, capacity,
    dim]: the caller hands views of its cache (for one layer, rows 0..n-1 or one slot are
    contiguous), so nothing is sliced or copied in the graph. Measured on GPT-2-small at 16 rows
    and 256 positions: 66 ms a step, against 96 ms with the whole cache as one input sliced per
    layer (a copy of every layer's rows each step)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids, lengths, *cached):
        m, (n, t) = self.m, ids.shape
        past_k, past_v = cached[:m.n_layers], cached[m.n_layers:]
        capacity = past_k[0].shape[2]
        hidden = torch.finfo(torch.float32).min
        blocked = torch.where(torch.arange(capacity)[None, :] < lengths[:, None], 0.0, hidden)[:, None, None, :]
        later = torch.arange(t)
        causal = torch.where(later[None, :] <= later[:, None], 0.0, hidden)  # [t, t]
        scale = m.head_dim ** -0.5
        new_k, new_v = [], []

        def attend(layer, q, k, v):
            # The cached keys are read where they lie: appending the new keys to them (a concat)
            # would copy the whole cache every layer of every step. The new tokens' scores join
            # the cached ones instead, and their values are weighted in after.
            q, k, v = (x.reshape(n, t, m.n_heads, m.head_dim).transpose(1, 2) for x in (q, k, v))  # [n, heads, t, dim]
            new_k.append(k)
            new_v.append(v)
            q = q * scale
            scores = torch.cat([q @ past_k[layer].transpose(-1, -2) + blocked, q @ k.transpose(-1, -2) + causal], -1)
            weights = torch.softmax(scores, -1)  # over [capacity cached + t new]
            out = weights[..., :capacity] @ past_v[layer] + weights[..., capacity:] @ v
            return out.transpose(1, 2).reshape(n * t, m.width)

        positions = (lengths[:, None] + later[None, :]).clamp(max=m.max_positions - 1)
        h = m._blocks((m.wte[ids] + m.wpe[positions]).reshape(n * t, m.width), attend)
        logits = h.reshape(n, t, m.width)[:, -1] @ m.lm_head.T
        return logits, torch.stack(new_k, 1), torch.stack(new_v, 1)  # [n, layers, heads, t, dim]


def cached_rows(cache, rows: slice) -> list[torch.Tensor]:
    """The step's cache inputs: each layer's keys, then each layer's values, for `rows` (views)."""
    return [cache.k[layer, rows] for layer in range(cache.layers)] + [cache.v[layer, rows] for layer in range(cache.layers)]


def step_example(cache) -> tuple[torch.Tensor, ...]:
    """Inputs to trace the step with: 2 rows of 1 token (ids [n, t] both dynamic)."""
    return (torch.zeros(2, 1, dtype=torch.long), torch.full((2,), 3), *cached_rows(cache, slice(0, 2)))


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
    shape = ov.PartialShape([-1, heads, -1, dim])
    with torch.inference_mode():
        return ov.convert_model(DecodeStep(model).eval(), example_input=step_example(cache),
                                input=[ov.PartialShape([-1, -1]), ov.PartialShape([-1])] + [shape] * (2 * layers))


class StepGraph:
    """A compiled step graph over bushu's cache: a decode step over rows 0..n-1 (`__call__`) and a
    prompt chunk into one slot (`prefill`). Subclasses open the graph and say how to run it (`_run`)."""

    def __init__(self, cache, input_count: int, step_file) -> None:
        check_inputs(input_count, cache, step_file)
        #: What a prompt's first chunk attends to besides itself: one masked position per layer.
        zeros = torch.zeros((1, cache.heads, 1, cache.head_dim), dtype=cache.dtype)
        self.scratch = [zeros] * (2 * cache.layers)

    def _run(self, ids: torch.Tensor, lengths: torch.Tensor, cached: list[torch.Tensor]):
        """(logits of each row's last token, new keys, new values) for ids [n, t] after `lengths`."""
        raise NotImplementedError

    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor, cache) -> torch.Tensor:
        """One token for each of rows 0..n-1 at `lengths`; its keys and values into the cache; logits [n, vocab]."""
        logits, k, v = self._run(ids[:, None], lengths, cached_rows(cache, slice(0, ids.shape[0])))
        rows = torch.arange(lengths.shape[0])
        cache.k[:, rows, :, lengths] = k[:, :, :, 0]  # (advanced indices first: [n, layers, heads, dim])
        cache.v[:, rows, :, lengths] = v[:, :, :, 0]
        return logits.clone()

    def prefill(self, ids: torch.Tensor, slot: int, start: int, cache) -> torch.Tensor:
        """A prompt chunk at positions start.. of `slot`; its keys and values into the cache; its last
        logits [1, vocab]. A later chunk reads the row's earlier positions in place (one slot of one
        layer is contiguous)."""
        cached = self.scratch if start == 0 else cached_rows(cache, slice(slot, slot + 1))
        logits, k, v = self._run(ids[None], torch.tensor([start]), cached)
        cache.k[:, slot, :, start:start + ids.shape[0]] = k[0]
        cache.v[:, slot, :, start:start + ids.shape[0]] = v[0]
        return logits.clone()


class OpenVinoDecode(StepGraph):
    def __init__(self, model, cache, threads: int = 0, step_file=None, activations: str = "f32") -> None:
        """`step_file`: a saved (e.g. weight-compressed) step IR; without it the fp32 step is converted.
        `activations`: "f32", or "bf16" for a variant that computes in bf16."""
        core = _openvino().Core()
        converted = core.read_model(str(step_file)) if step_file else convert_step(model, cache)
        super().__init__(cache, len(converted.inputs), step_file)
        # the precision always explicit: on CPUs with AVX-512 BF16 OpenVINO would otherwise run in bf16
        config = {"INFERENCE_PRECISION_HINT": activations, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.request = core.compile_model(converted, "CPU", config).create_infer_request()

    def _run(self, ids: torch.Tensor, lengths: torch.Tensor, cached: list[torch.Tensor]):
        results = self.request.infer([ids.numpy(), lengths.numpy(), *(c.numpy() for c in cached)], share_inputs=True)
        return (torch.from_numpy(results[i]) for i in range(3))


def check_inputs(count: int, cache, step_file) -> None:
    """Refuse a step file whose graph takes other inputs than this module's (one saved by an earlier
    bushu took the whole cache as two inputs and one token per row)."""
    if count != 2 + 2 * cache.layers:
        from bushu.errors import PackageError

        raise PackageError(f"{step_file}: the step graph takes {count} inputs, not the {2 + 2 * cache.layers} "
                           "this bushu passes (ids, lengths, each layer's keys and values); run `bushu optimize` "
                           "again to rebuild the variant")
