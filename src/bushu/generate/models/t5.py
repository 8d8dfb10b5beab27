"""T5 over a slot cache: `prefill` encodes the source once into the slot's cross-attention
keys/values and runs the decoder's start token; `decode` advances every running slot by one
token, each with its own self-attention length, source length and relative position bias."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from bushu.generate.kv_cache import KVCache

_ACT = {"relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu, "silu": F.silu}


def relative_bucket(relative: torch.Tensor, bidirectional: bool, buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bucketing of key-minus-query distances (as `transformers` computes it)."""
    result = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        result += (relative > 0).long() * buckets
        relative = relative.abs()
    else:
        relative = -torch.clamp(relative, max=0)
    exact = buckets // 2
    large = exact + (torch.log(relative.float() / exact) / math.log(max_distance / exact) * (buckets - exact)).long()
    large = torch.clamp(large, max=buckets - 1)
    return result + torch.where(relative < exact, relative, large)


class Model:
    is_encoder_decoder = True

    def __init__(self, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        self.width, self.n_heads, self.head_dim = int(config["d_model"]), int(config["num_heads"]), int(config["d_kv"])
        self.n_layers = int(config.get("num_decoder_layers") or config["num_layers"])
        self.n_enc_layers = int(config["num_layers"])
        self.vocab_size = int(config["vocab_size"])
        self.buckets = int(config.get("relative_attention_num_buckets", 32))
        self.max_distance = int(config.get("relative_attention_max_distance", 128))
        self.eps = float(config.get("layer_norm_epsilon", 1e-6))
        proj = config.get("feed_forward_proj", "relu")
        self.gated = proj.startswith("gated-")
        self.act = _ACT[config.get("dense_act_fn") or proj.removeprefix("gated-").replace("gelu", "gelu_new")]
        self.shared = state["shared.weight"]
        self.tied = config.get("tie_word_embeddings", True)
        self.lm_head = self.shared if self.tied or "lm_head.weight" not in state else state["lm_head.weight"]
        self.inner = self.n_heads * self.head_dim

        def attention(prefix: str) -> tuple[torch.Tensor, ...]:
            return tuple(state[f"{prefix}.{n}.weight"] for n in "qkvo")

        def ff(prefix: str) -> tuple[torch.Tensor, ...]:
            names = ("wi_0", "wi_1", "wo") if self.gated else ("wi", "wo")
            return tuple(state[f"{prefix}.DenseReluDense.{n}.weight"] for n in names)

        e, d = "encoder.block", "decoder.block"
        self.encoder = [(state[f"{e}.{i}.layer.0.layer_norm.weight"], attention(f"{e}.{i}.layer.0.SelfAttention"),
                         state[f"{e}.{i}.layer.1.layer_norm.weight"], ff(f"{e}.{i}.layer.1"))
                        for i in range(self.n_enc_layers)]
        self.decoder = [(state[f"{d}.{i}.layer.0.layer_norm.weight"], attention(f"{d}.{i}.layer.0.SelfAttention"),
                         state[f"{d}.{i}.layer.1.layer_norm.weight"], attention(f"{d}.{i}.layer.1.EncDecAttention"),
                         state[f"{d}.{i}.layer.2.layer_norm.weight"], ff(f"{d}.{i}.layer.2"))
                        for i in range(self.n_layers)]
        self.enc_bias = state[f"{e}.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        self.dec_bias = state[f"{d}.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        self.enc_norm, self.dec_norm = state["encoder.final_layer_norm.weight"], state["decoder.final_layer_norm.weight"]
        self.dtype, self.device = self.shared.dtype, self.shared.device
        self.start_token = int(config.get("decoder_start_token_id") or 0)

    def cache_shape(self) -> tuple[int, int, int]:
        return self.n_layers, self.n_heads, self.head_dim

    def cache_extra(self, config: Any) -> dict[str, int]:
        return {"max_source": int(config.max_source_tokens or config.context)}

    def _norm(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        variance = h.float().pow(2).mean(-1, keepdim=True)
        return weight * (h.float() * torch.rsqrt(variance + self.eps)).to(weight.dtype)

    def _ff(self, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.gated:
            wi0, wi1, wo = weights
            return F.linear(self.act(F.linear(h, wi0)) * F.linear(h, wi1), wo)
        wi, wo = weights
        return F.linear(self.act(F.linear(h, wi)), wo)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [t, inner] -> [heads, t, dim]
        return x.view(x.shape[0], self.n_heads, self.head_dim).transpose(0, 1)

    def _bias(self, table: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, bidirectional: bool) -> torch.Tensor:
        """[.., heads, q, k] position bias for query positions `queries` [..., q] and key positions [k]."""
        buckets = relative_bucket(keys[None, :] - queries[..., None], bidirectional, self.buckets, self.max_distance)
        return table[buckets].movedim(-1, -3)

    @torch.inference_mode()
    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[0], device=ids.device)
        bias = self._bias(self.enc_bias, positions, positions, True)
        h = self.shared[ids]
        for n1, (q, k, v, o), n2, ff in self.encoder:
            x = self._norm(h, n1)
            att = F.scaled_dot_product_attention(self._heads(F.linear(x, q)), self._heads(F.linear(x, k)),
                                                 self._heads(F.linear(x, v)), attn_mask=bias, scale=1.0)
            h = h + F.linear(att.transpose(0, 1).reshape(-1, self.inner), o)
            h = h + self._ff(self._norm(h, n2), ff)
        return self._norm(h, self.enc_norm)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, slot: int, start: int, cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        """Encode the source `ids` into `slot` and run the start token; logits [1, vocab]."""
        encoded = self.encode(ids)
        n = ids.shape[0]
        for layer, (*_, (_, k, v, _), _, _) in enumerate(self.decoder):
            cache.ck[layer, slot, :, :n] = self._heads(F.linear(encoded, k))
            cache.cv[layer, slot, :, :n] = self._heads(F.linear(encoded, v))
        cache.source_lengths[slot] = n
        start_ids = torch.tensor([self.start_token], device=ids.device)
        return self._decode(start_ids, torch.zeros(1, dtype=torch.long, device=ids.device), cache, slot, slot + 1)

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache, end: int | None = None) -> torch.Tensor:
        return self._decode(ids, lengths, cache, 0, ids.shape[0], end)

    def _decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache, first: int, last: int,
                end: int | None = None) -> torch.Tensor:
        n = ids.shape[0]
        end = int(lengths.max()) + 1 if end is None else end
        rows = torch.arange(first, last, device=ids.device)
        keys = torch.arange(end, device=ids.device)
        bias = self._bias(self.dec_bias, lengths[:, None], keys, False)  # [n, heads, 1, end]
        bias = bias.masked_fill((keys[None, :] > lengths[:, None])[:, None, None, :], float("-inf"))
        source = int(cache.source_lengths[first:last].max()) if end is None else cache.source
        cross_mask = (torch.arange(source, device=ids.device)[None, :]
                      < cache.source_lengths[first:last, None])[:, None, None, :]
        h = self.shared[ids]
        for layer, (n1, (q, k, v, o), n2, (cq, _, _, co), n3, ff) in enumerate(self.decoder):
            x = self._norm(h, n1)
            cache.k[layer, rows, :, lengths] = F.linear(x, k).view(n, self.n_heads, self.head_dim)
            cache.v[layer, rows, :, lengths] = F.linear(x, v).view(n, self.n_heads, self.head_dim)
            query = F.linear(x, q).view(n, self.n_heads, 1, self.head_dim)
            att = F.scaled_dot_product_attention(query, cache.k[layer, first:last, :, :end],
                                                 cache.v[layer, first:last, :, :end], attn_mask=bias, scale=1.0)
            h = h + F.linear(att.reshape(n, self.inner), o)
            query = F.linear(self._norm(h, n2), cq).view(n, self.n_heads, 1, self.head_dim)
            att = F.scaled_dot_product_attention(query, cache.ck[layer, first:last, :, :source],
                                                 cache.cv[layer, first:last, :, :source], attn_mask=cross_mask, scale=1.0)
            h = h + F.linear(att.reshape(n, self.inner), co)
            h = h + self._ff(self._norm(h, n3), ff)
        h = self._norm(h, self.dec_norm)
        if self.tied:
            h = h * self.width ** -0.5
        return h @ self.lm_head.T
