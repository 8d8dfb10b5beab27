"""Marian (the architecture of the OPUS-MT translators) over a slot cache: like `t5`, `prefill`
encodes the source once into the slot's cross-attention keys/values and runs the decoder's start
token, and `decode` advances every running slot by one token. What differs from T5: absolute
sinusoidal positions (never stored in the checkpoint: computed here as `transformers` does),
embeddings scaled by √width when `scale_embedding`, post-norm layers with biases everywhere, and
a final logits bias."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from bushu.errors import InvalidInput
from bushu.generate.kv_cache import KVCache

_ACT = {"swish": F.silu, "silu": F.silu, "relu": F.relu, "gelu": F.gelu,
        "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def sinusoids(positions: int, width: int) -> torch.Tensor:
    """`MarianSinusoidalPositionalEmbedding`'s table: sines in the first half, cosines in the second."""
    position = torch.arange(positions, dtype=torch.float64)[:, None]
    rates = torch.pow(10000.0, -2 * (torch.arange(width, dtype=torch.float64) // 2) / width)
    angles = position * rates
    return torch.cat([torch.sin(angles[:, 0::2]), torch.cos(angles[:, 1::2])], dim=1).float()


class Model:
    is_encoder_decoder = True

    def __init__(self, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        if config.get("normalize_before") or config.get("add_final_layer_norm"):
            raise InvalidInput("pre-norm Marian variants (normalize_before, add_final_layer_norm) are not supported")
        self.width = int(config["d_model"])
        self.n_heads = int(config["decoder_attention_heads"])
        self.n_enc_heads = int(config["encoder_attention_heads"])
        self.head_dim = self.width // self.n_heads
        self.n_layers = int(config["decoder_layers"])
        self.vocab_size = int(config.get("decoder_vocab_size") or config["vocab_size"])
        self.act = _ACT[config.get("activation_function", "swish")]
        self.scale = math.sqrt(self.width) if config.get("scale_embedding") else 1.0
        self.max_positions = int(config["max_position_embeddings"])
        prefix = "model." if "model.shared.weight" in state or "model.encoder.embed_tokens.weight" in state else ""

        def w(name: str) -> torch.Tensor:
            return state[prefix + name]

        self.enc_embed = state.get(prefix + "encoder.embed_tokens.weight", state.get(prefix + "shared.weight"))
        self.dec_embed = state.get(prefix + "decoder.embed_tokens.weight", state.get(prefix + "shared.weight"))
        self.lm_head = state.get("lm_head.weight", self.dec_embed)
        self.logits_bias = state["final_logits_bias"][0] if "final_logits_bias" in state else None
        self.positions = sinusoids(self.max_positions, self.width).to(self.dec_embed.device, self.dec_embed.dtype)

        def attention(name: str) -> tuple[torch.Tensor, ...]:
            return tuple(w(f"{name}.{p}_proj.{t}") for p in ("q", "k", "v", "out") for t in ("weight", "bias"))

        def norm(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            return w(f"{name}.weight"), w(f"{name}.bias")

        def ff(name: str) -> tuple[torch.Tensor, ...]:
            return w(f"{name}.fc1.weight"), w(f"{name}.fc1.bias"), w(f"{name}.fc2.weight"), w(f"{name}.fc2.bias")

        e, d = "encoder.layers", "decoder.layers"
        self.encoder = [(attention(f"{e}.{i}.self_attn"), norm(f"{e}.{i}.self_attn_layer_norm"), ff(f"{e}.{i}"),
                         norm(f"{e}.{i}.final_layer_norm")) for i in range(int(config["encoder_layers"]))]
        self.decoder = [(attention(f"{d}.{i}.self_attn"), norm(f"{d}.{i}.self_attn_layer_norm"),
                         attention(f"{d}.{i}.encoder_attn"), norm(f"{d}.{i}.encoder_attn_layer_norm"),
                         ff(f"{d}.{i}"), norm(f"{d}.{i}.final_layer_norm")) for i in range(self.n_layers)]
        self.dtype, self.device = self.dec_embed.dtype, self.dec_embed.device
        self.start_token = int(config.get("decoder_start_token_id") or config.get("pad_token_id") or 0)

    def cache_shape(self) -> tuple[int, int, int]:
        return self.n_layers, self.n_heads, self.head_dim

    def cache_extra(self, config: Any) -> dict[str, int]:
        return {"max_source": int(config.max_source_tokens or config.context)}

    def _norm(self, h: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.layer_norm(h, (self.width,), *weights, 1e-5)

    def _ff(self, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        w1, b1, w2, b2 = weights
        return F.linear(self.act(F.linear(h, w1, b1)), w2, b2)

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:  # [t, width] -> [heads, t, dim]
        return x.view(x.shape[0], heads, self.width // heads).transpose(0, 1)

    @torch.inference_mode()
    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[0] > self.max_positions:
            raise InvalidInput(f"the source has {ids.shape[0]} tokens; this Marian model reads at most {self.max_positions}")
        h = self.enc_embed[ids] * self.scale + self.positions[: ids.shape[0]]
        for (qw, qb, kw, kb, vw, vb, ow, ob), n1, ff, n2 in self.encoder:
            q, k, v = (self._split(F.linear(h, a, b), self.n_enc_heads) for a, b in ((qw, qb), (kw, kb), (vw, vb)))
            att = F.scaled_dot_product_attention(q, k, v)
            h = self._norm(h + F.linear(att.transpose(0, 1).reshape(-1, self.width), ow, ob), n1)
            h = self._norm(h + self._ff(h, ff), n2)
        return h

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, slot: int, start: int, cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        """Encode the source `ids` into `slot` and run the start token; logits [1, vocab]."""
        encoded = self.encode(ids)
        n = ids.shape[0]
        for layer, (_, _, (_, _, kw, kb, vw, vb, _, _), *_) in enumerate(self.decoder):
            cache.ck[layer, slot, :, :n] = self._split(F.linear(encoded, kw, kb), self.n_heads)
            cache.cv[layer, slot, :, :n] = self._split(F.linear(encoded, vw, vb), self.n_heads)
        cache.source_lengths[slot] = n
        start_ids = torch.tensor([self.start_token], device=ids.device)
        return self._decode(start_ids, torch.zeros(1, dtype=torch.long, device=ids.device), cache, slot, slot + 1)

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache, end: int | None = None) -> torch.Tensor:
        return self._decode(ids, lengths, cache, 0, ids.shape[0], end)

    def _decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache, first: int, last: int,
                end: int | None = None) -> torch.Tensor:
        n = ids.shape[0]
        source = int(cache.source_lengths[first:last].max()) if end is None else cache.source
        end = int(lengths.max()) + 1 if end is None else end
        rows = torch.arange(first, last, device=ids.device)
        self_mask = (torch.arange(end, device=ids.device)[None, :] <= lengths[:, None])[:, None, None, :]
        cross_mask = (torch.arange(source, device=ids.device)[None, :]
                      < cache.source_lengths[first:last, None])[:, None, None, :]
        h = self.dec_embed[ids] * self.scale + self.positions[lengths.clamp(max=self.max_positions - 1)]
        for layer, ((qw, qb, kw, kb, vw, vb, ow, ob), n1, (cqw, cqb, *_, cow, cob), n2, ff, n3) in enumerate(self.decoder):
            cache.k[layer, rows, :, lengths] = F.linear(h, kw, kb).view(n, self.n_heads, self.head_dim)
            cache.v[layer, rows, :, lengths] = F.linear(h, vw, vb).view(n, self.n_heads, self.head_dim)
            query = F.linear(h, qw, qb).view(n, self.n_heads, 1, self.head_dim)
            att = F.scaled_dot_product_attention(query, cache.k[layer, first:last, :, :end],
                                                 cache.v[layer, first:last, :, :end], attn_mask=self_mask)
            h = self._norm(h + F.linear(att.reshape(n, self.width), ow, ob), n1)
            query = F.linear(h, cqw, cqb).view(n, self.n_heads, 1, self.head_dim)
            att = F.scaled_dot_product_attention(query, cache.ck[layer, first:last, :, :source],
                                                 cache.cv[layer, first:last, :, :source], attn_mask=cross_mask)
            h = self._norm(h + F.linear(att.reshape(n, self.width), cow, cob), n2)
            h = self._norm(h + self._ff(h, ff), n3)
        logits = h @ self.lm_head.T
        return logits if self.logits_bias is None else logits + self.logits_bias
