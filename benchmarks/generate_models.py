"""The GPT-2-small-architecture model the generation benchmarks share: `GPT2Config()` (124 M
parameters) with random weights, saved once into a work folder (nothing downloaded), with a
50257-token word-level tokenizer whose token i is the string "t{i}" (the last one GPT-2's
<|endoftext|>), so every peer sees the same ids and CTranslate2's string tokens map one to one."""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = 50257


def gpt2_small(workdir: Path, seed: int = 0) -> Path:
    out = workdir / "gpt2-small"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    vocab = {f"t{i}": i for i in range(VOCAB - 1)} | {"<|endoftext|>": VOCAB - 1}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    tokenizer.add_special_tokens(["<|endoftext|>"])
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "model_max_length": 1024}))
    return out


def prompts(count: int, length: int, seed: int = 1) -> list[list[int]]:
    """`count` prompts of `length` token ids (never <|endoftext|>)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB - 1, size=(count, length)).tolist()
