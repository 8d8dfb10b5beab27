"""Train the small Marian on pycountry's English → German names, score it and two baselines on
held-out names with chrF and BLEU (`sacrebleu`), package it for the generation path."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bushu.apps.optimizer import adamw_one_cycle
from bushu.apps.translate.baselines import WordDictionary, copy
from bushu.apps.translate.data import PairSplit, load_split
from bushu.apps.translate.model import POSITIONS, SIZES, build_tokenizer, marian
from bushu.package.manifest import Manifest

Progress = Callable[[int, int, float], None]
LEARNING_RATE = 1.5e-3
#: Bytes: the longest German name is 105; the start token takes the first of the 128 positions.
MAX_NEW_TOKENS = POSITIONS - 1


@dataclass
class Scores:
    chrf: float
    bleu: float


@dataclass
class TrainedTranslator:
    model: Any  # transformers.MarianMTModel, in eval mode
    tokenizer: Any
    split: PairSplit
    outputs: list[str]  # the model's greedy translation of each held-out source
    model_scores: Scores
    copy_scores: Scores
    dictionary_scores: Scores
    train_seconds: float

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def score(outputs: list[str], references: list[str]) -> Scores:
    import sacrebleu

    return Scores(sacrebleu.corpus_chrf(outputs, [references]).score, sacrebleu.corpus_bleu(outputs, [references]).score)


def train(epochs: int = 8, seed: int = 0, limit: int | None = None, test_limit: int | None = None,
          batch_size: int = 16, sizes: dict[str, int] | None = None, progress: Progress | None = None,
          language: str = "de") -> TrainedTranslator:
    """Train on the training names (the first `limit`, for quick runs); score on the held-out
    names (the first `test_limit`)."""
    import torch

    torch.manual_seed(seed)
    split = load_split(language, seed=seed)
    split = PairSplit(split.train[:limit], split.test[:test_limit])
    tokenizer = build_tokenizer()
    sources = [e.ids for e in tokenizer.encode_batch([s for s, _ in split.train])]
    targets = [e.ids for e in tokenizer.encode_batch([t for _, t in split.train])]
    model = marian(tokenizer.get_vocab_size(), **(sizes or SIZES))
    batches = -(-len(sources) // batch_size)
    optimizer, schedule = adamw_one_cycle(model, LEARNING_RATE, epochs * batches)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(sources), generator=generator).split(batch_size):
            ids, mask = _pad([sources[i] for i in batch], 0)
            labels, _ = _pad([targets[i] for i in batch], -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if progress:
            progress(epoch + 1, epochs, total / len(sources))
    seconds = time.perf_counter() - start
    model.eval()
    test_sources = [s for s, _ in split.test]
    references = [t for _, t in split.test]
    outputs = translate(model, tokenizer, test_sources)
    return TrainedTranslator(model, tokenizer, split, outputs, score(outputs, references),
                             score(copy(test_sources), references),
                             score(WordDictionary(split.train).translate(test_sources), references), seconds)


def translate(model: Any, tokenizer: Any, sources: list[str], batch_size: int = 256,
              max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy translations with `transformers`' own `generate()`, in batches of similar length."""
    import torch

    encoded = [e.ids for e in tokenizer.encode_batch(sources)]
    order = sorted(range(len(sources)), key=lambda i: len(encoded[i]))
    outputs = [""] * len(sources)
    with torch.inference_mode():
        for at in range(0, len(order), batch_size):
            chunk = order[at:at + batch_size]
            ids, mask = _pad([encoded[i] for i in chunk], 0)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 num_beams=1)
            for i, row in zip(chunk, out.tolist()):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True)
    return outputs


def _pad(rows: list[list[int]], value: int) -> tuple[Any, Any]:
    import torch

    ids = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def package(trained: TrainedTranslator, out: str | Path, *, force: bool = False,
            verify_prompts: int = 50) -> Manifest:
    from bushu.export.hf_generate import pack_hf_generator

    with tempfile.TemporaryDirectory(prefix="bushu-translate-") as tmp:
        trained.model.save_pretrained(tmp, safe_serialization=True)
        trained.tokenizer.save(str(Path(tmp) / "tokenizer.json"))
        return pack_hf_generator(
            tmp, out, name="names-en-de", force=force, prompts=verify_prompts,
            defaults={"context": POSITIONS, "max_new_tokens": MAX_NEW_TOKENS},
            metrics={"test_chrf": trained.model_scores.chrf, "test_bleu": trained.model_scores.bleu,
                     "baseline_copy_chrf": trained.copy_scores.chrf, "baseline_copy_bleu": trained.copy_scores.bleu,
                     "baseline_dictionary_chrf": trained.dictionary_scores.chrf,
                     "baseline_dictionary_bleu": trained.dictionary_scores.bleu,
                     "parameters": float(trained.parameters), "train_seconds": round(trained.train_seconds, 2),
                     "train_pairs": float(len(trained.split.train)), "test_pairs": float(len(trained.split.test))})
