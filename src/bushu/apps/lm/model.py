"""The language model: GPT-2's architecture through `transformers`, small enough to train here."""

from __future__ import annotations

from typing import Any

from bushu.apps.lm.data import END_ID

#: About 0.63 M parameters besides the token embedding, which the output layer shares (0.89 M in all
#: over 2,048 pieces, 0.66 M over bytes): small because it trains on 2 CPU cores in minutes.
SIZES = {"width": 128, "layers": 3, "heads": 4}
#: Tokens: 99.96 % of the texts fit whole even as bytes.
CONTEXT = 256


def gpt2(vocab_size: int, *, width: int, layers: int, heads: int, context: int = CONTEXT) -> Any:
    """No dropout: in the epochs a CPU affords the model under-fits, and dropout only slows it."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=context, n_embd=width, n_layer=layers, n_head=heads,
        bos_token_id=END_ID, eos_token_id=END_ID, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config)
