"""The language model: GPT-2's architecture through `transformers`, small enough to train here."""

from __future__ import annotations

from typing import Any

from bushu.apps.lm.data import END_ID

#: About 0.66 M parameters over bytes (the output layer shares the input embedding): small because
#: it trains on 2 shared CPU cores within the demo's minutes.
SIZES = {"width": 128, "layers": 3, "heads": 4}
#: Bytes: 99.96 % of the texts fit whole.
CONTEXT = 256


def gpt2(vocab_size: int, *, width: int, layers: int, heads: int, context: int = CONTEXT) -> Any:
    """No dropout: in the epochs a CPU affords the model under-fits, and dropout only slows it."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=context, n_embd=width, n_layer=layers, n_head=heads,
        bos_token_id=END_ID, eos_token_id=END_ID, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config)
