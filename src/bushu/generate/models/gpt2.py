"""GPT-2 over a slot cache: `prefill` writes a prompt chunk into one slot, `decode` advances
every running slot by one token in one batched call (each at its own length, masked)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from bushu.errors import InvalidInput
from bushu.generate.kv_cache import KVCache

_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


class Model:
    is_encoder_decoder = False

    def __init__(self, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        if config.get("scale_attn_by_inverse_layer_idx") or config.get("reorder_and_upcast_attn"):
            raise InvalidInput("GPT-2 attention variants (scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn) "
                             "are not supported")
        prefix = "transformer." if "transformer.wte.weight" in state else ""
        w = lambda name: state[prefix + name]  # noqa: E731
        self.n_layers, self.n_heads = int(config["n_layer"]), int(config["n_head"])
        self.width = int(config["n_embd"])
        self.head_dim = self.width // self.n_heads
        self.max_positions = int(config["n_positions"])
        self.vocab_size = int(config["vocab_size"])
        self.eps = float(config.get("layer_norm_epsilon", 1e-5))
        self.act = _ACTIVATIONS[config.get("activation_function", "gelu_new")]
        self.wte, self.wpe = w("wte.weight"), w("wpe.weight")
        self.lm_head = state.get("lm_head.weight", self.wte)
        self.blocks = [
            tuple(w(f"h.{i}.{n}") for n in (
                "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                "mlp.c_proj.weight", "mlp.c_proj.bias"))
            for i in range(self.n_layers)
        ]
        self.ln_f = (w("ln_f.weight"), w("ln_f.bias"))
        self.dtype, self.device = self.wte.dtype, self.wte.device

    def cache_shape(self) -> tuple[int, int, int]:
        """(layers, heads, head_dim) of the self-attention cache."""
        return self.n_layers, self.n_heads, self.head_dim

    def cache_extra(self, config) -> dict:
        return {}

    def _blocks(self, h: torch.Tensor, attend) -> torch.Tensor:
        d = (self.width,)
        for layer, (l1w, l1b, aw, ab, pw, pb, l2w, l2b, fw, fb, f2w, f2b) in enumerate(self.blocks):
            qkv = torch.addmm(ab, F.layer_norm(h, d, l1w, l1b, self.eps), aw)
            q, k, v = qkv.view(h.shape[0], 3, self.n_heads, self.head_dim).unbind(1)
            h = h + torch.addmm(pb, attend(layer, q, k, v), pw)
            h = h + torch.addmm(f2b, self.act(torch.addmm(fb, F.layer_norm(h, d, l2w, l2b, self.eps), fw)), f2w)
        return F.layer_norm(h, d, *self.ln_f, self.eps)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, slot: int, start: int, cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        """Run prompt tokens `ids` at positions start.. of `slot`; logits of the last (or every) one."""
        return self.prefill_many([(ids, slot, start)], cache, all_logits=all_logits)

    @torch.inference_mode()
    def prefill_many(self, chunks: list[tuple[torch.Tensor, int, int]], cache: KVCache,
                     all_logits: bool = False) -> torch.Tensor:
        """Prompt chunks (ids, slot, start) of several sequences in one forward: their tokens share
        every matrix product (one large product instead of one per prompt), only attention runs per
        chunk. Logits of each chunk's last token, in order (or of every token)."""
        spans, offset = [], 0
        for ids, slot, start in chunks:
            c = ids.shape[0]
            positions = torch.arange(start, start + c, device=ids.device)
            causal = torch.arange(start + c, device=ids.device)[None, :] <= positions[:, None]
            spans.append((offset, offset + c, slot, start, positions, causal))
            offset += c

        def attend(layer: int, q, k, v):
            out = torch.empty(q.shape[0], self.width, dtype=q.dtype, device=q.device)
            for lo, hi, slot, start, _, causal in spans:
                end = start + hi - lo
                cache.k[layer, slot, :, start:end] = k[lo:hi].transpose(0, 1)
                cache.v[layer, slot, :, start:end] = v[lo:hi].transpose(0, 1)
                out[lo:hi] = F.scaled_dot_product_attention(
                    q[lo:hi].transpose(0, 1), cache.k[layer, slot, :, :end], cache.v[layer, slot, :, :end],
                    attn_mask=causal).transpose(0, 1).reshape(hi - lo, self.width)
            return out

        ids = torch.cat([c[0] for c in chunks])
        positions = torch.cat([s[4] for s in spans])
        h = self._blocks(self.wte[ids] + self.wpe[positions], attend)
        return (h if all_logits else h[[hi - 1 for _, hi, *_ in spans]]) @ self.lm_head.T

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache, end: int | None = None) -> torch.Tensor:
        """One token for each of slots 0..n-1, each at position `lengths[i]`; logits [n, vocab].
        `end` (attend over that many positions, masked) fixes the shapes for a CUDA graph."""
        n = ids.shape[0]
        end = int(lengths.max()) + 1 if end is None else end
        rows = torch.arange(n, device=ids.device)
        mask = (torch.arange(end, device=ids.device)[None, :] <= lengths[:, None])[:, None, None, :]

        def attend(layer: int, q, k, v):
            cache.k[layer, rows, :, lengths] = k
            cache.v[layer, rows, :, lengths] = v
            out = F.scaled_dot_product_attention(q[:, :, None], cache.k[layer, :n, :, :end],
                                                 cache.v[layer, :n, :, :end], attn_mask=mask)
            return out.reshape(n, self.width)

        # (a padding row of the static step sits at the scratch position, one past the last)
        positions = lengths.clamp(max=self.max_positions - 1)
        return self._blocks(self.wte[ids] + self.wpe[positions], attend) @ self.lm_head.T
