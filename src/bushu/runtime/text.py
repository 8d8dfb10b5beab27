"""The `tokenize` pre-processing step: text → INT64 token ids, with the vocabulary as package data.

A text model is only as faithful as its tokenizer, so the tokenizer travels in the package: the
vocabulary is a JSON file listed (and hashed) in the manifest, and the step's parameters say
how text is split. This module is the step's one implementation — training, tests and the
server all turn text into ids here, so what is served is what was trained on.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import InvalidInput, PackageError
from bushu.package.manifest import Manifest, Step
from bushu.runtime.base import FileReader, disk_reader

STEP_KIND = "tokenize"
PAD, UNK, URL, USER = "<pad>", "<unk>", "<url>", "<user>"
#: Words (with inner apostrophes), links, @mentions, #tags, and any other single non-space mark,
#: so "!!" and ":)" carry their sentiment as tokens.
DEFAULT_PATTERN = r"https?://\S+|@\w+|#?\w+(?:'\w+)*|[^\w\s]"


@dataclass(frozen=True)
class Tokenizer:
    """Lower-cased regex tokens looked up in a vocabulary; id 0 pads, id 1 is unknown."""

    vocab: tuple[str, ...]
    max_length: int = 64
    pattern: str = DEFAULT_PATTERN
    input: str = "ids"

    def __post_init__(self) -> None:
        if self.vocab[:2] != (PAD, UNK):
            raise PackageError(f"a vocabulary starts with {PAD!r}, {UNK!r}; this one with {list(self.vocab[:2])}")
        object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.vocab)})
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 2, max_size: int = 30_000,
              max_length: int = 64) -> Tokenizer:
        """A vocabulary of the tokens seen at least `min_count` times in `texts` (training texts only)."""
        probe = cls((PAD, UNK, URL, USER), max_length=max_length)
        counts = Counter(token for text in texts for token in probe.tokens(text))
        common = [t for t, n in counts.most_common(max_size) if n >= min_count and t not in probe._ids]
        return cls((PAD, UNK, URL, USER, *common), max_length=max_length)

    def tokens(self, text: str) -> list[str]:
        """Split one text; links become <url> and @mentions <user> (no two are alike)."""
        out = []
        for token in self._regex.findall(text.lower()):
            if token.startswith(("http://", "https://")):
                token = URL
            elif token.startswith("@") and len(token) > 1:
                token = USER
            out.append(token)
        return out[: self.max_length]

    def encode(self, text: Any) -> list[int]:
        """Token ids of one text; empty or non-text input is refused, not silently scored."""
        if not isinstance(text, str):
            raise InvalidInput(f"expected text, got {type(text).__name__}")
        tokens = self.tokens(text)
        if not tokens:
            raise InvalidInput(f"text {text!r} has no tokens: there is nothing to classify")
        unk = self._ids[UNK]
        return [self._ids.get(t, unk) for t in tokens]

    def encode_batch(self, texts: Sequence[Any]) -> np.ndarray:
        """INT64 [batch, longest] ids, each row right-padded with 0."""
        if isinstance(texts, str) or len(texts) == 0:
            raise InvalidInput("expected a non-empty list of texts")
        rows = [self.encode(t) for t in texts]
        ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return ids

    # -- as package data ------------------------------------------------------------------

    def vocab_bytes(self) -> bytes:
        return json.dumps(list(self.vocab), ensure_ascii=False).encode()

    def step(self, vocab_file: str) -> Step:
        return Step(kind=STEP_KIND, params={
            "vocab": vocab_file, "input": self.input, "max_length": self.max_length,
            "pattern": self.pattern, "lowercase": True, "pad_id": 0, "unk_id": 1,
        })

    @classmethod
    def from_step(cls, step: Step, root: str | Path | FileReader) -> Tokenizer:
        """The tokenizer a package declares; `root` is the package directory holding the
        vocabulary, or a reader of the package's files (`PackageFiles.read`: hashed bytes)."""
        fixed = {"lowercase": True, "pad_id": 0, "unk_id": 1}
        differ = {k: step.params.get(k) for k, v in fixed.items() if step.params.get(k, v) != v}
        if differ:
            raise PackageError(f"tokenize step asks for {differ}; this version of bushu implements {fixed}")
        read = root if callable(root) else disk_reader(Path(root))
        try:
            vocab = json.loads(read(step.params["vocab"]).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise PackageError(f"cannot read the vocabulary {step.params['vocab']}: {exc}") from None
        return cls(tuple(vocab), max_length=step.params["max_length"], pattern=step.params["pattern"],
                   input=step.params.get("input", "ids"))

    @classmethod
    def from_manifest(cls, manifest: Manifest, root: str | Path | FileReader) -> Tokenizer:
        steps = [s for s in manifest.preprocessing if s.kind == STEP_KIND]
        if len(steps) != 1:
            raise PackageError(f"package {manifest.name} declares {len(steps)} tokenize steps, expected one")
        return cls.from_step(steps[0], root)
