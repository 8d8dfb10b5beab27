"""Eval and calibration sets: the files users pass, read into batched model inputs.

A `.npz` holds one array per model input (batch first) and, optionally, `labels`. For a text
package a `.txt` file (one text per line) is tokenized by the package's own tokenize step.
Every sample carries a key (its text, or its tensors' bytes) so that a calibration set that
shares samples with the eval set is refused: a budget checked on the data the model was
calibrated on proves nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bushu.errors import InvalidInput, NotFound
from bushu.package.manifest import Manifest
from bushu.runtime.base import check_inputs

LABELS_KEY = "labels"


@dataclass
class Samples:
    """A batch-first set of model inputs, optional labels, and one identity key per sample."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    keys: list[bytes]
    source: str
    #: The texts the inputs were tokenized from (a .txt file), so a set can be re-tokenized with others.
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, index: np.ndarray, source: str | None = None) -> Samples:
        return Samples(
            {k: v[index] for k, v in self.inputs.items()},
            None if self.labels is None else self.labels[index],
            [self.keys[i] for i in index],
            source or self.source,
            None if self.texts is None else [self.texts[i] for i in index],
        )

    def batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), size):
            yield {k: v[start : start + size] for k, v in self.inputs.items()}

    def batch(self, size: int) -> dict[str, np.ndarray]:
        """The first `size` samples, repeated if the set is smaller: a timing batch."""
        index = np.arange(size) % len(self)
        return {k: np.ascontiguousarray(v[index]) for k, v in self.inputs.items()}


def _tensor_keys(inputs: dict[str, np.ndarray]) -> list[bytes]:
    n = len(next(iter(inputs.values())))
    return [hashlib.sha256(b"".join(np.ascontiguousarray(v[i]).tobytes() for v in inputs.values())).digest()
            for i in range(n)]


def _read_npz(path: Path, manifest: Manifest) -> Samples:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: cannot read as .npz ({exc})") from None
    labels = arrays.pop(LABELS_KEY, None)
    inputs = check_inputs(manifest.inputs, arrays)
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1 or (labels is not None and len(labels) not in sizes):
        raise InvalidInput(f"{path}: inputs and labels differ in length ({sorted(sizes)}, labels {None if labels is None else len(labels)})")
    return Samples(inputs, labels, _tensor_keys(inputs), str(path))


def _read_text(path: Path, manifest: Manifest, package: Path) -> Samples:
    if not is_text_package(manifest):
        raise InvalidInput(f"{path}: a text file needs a text package (one with a tokenize step); pass a .npz")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise InvalidInput(f"{path}: no texts (one per line)")
    return from_texts(texts, manifest, package, str(path))


def is_text_package(manifest: Manifest) -> bool:
    from bushu.runtime import hf_text, text

    return bool({text.STEP_KIND, hf_text.STEP_KIND} & {s.kind for s in manifest.preprocessing})


def from_texts(texts: list[str], manifest: Manifest, package: Path, source: str) -> Samples:
    """Texts tokenized by the package's own tokenize step (padded to the longest of them)."""
    from bushu.runtime import hf_text, text

    kinds = {s.kind: s for s in manifest.preprocessing}
    if hf_text.STEP_KIND in kinds:
        inputs = hf_text.tokenize(texts, kinds[hf_text.STEP_KIND], package)
    else:
        tokenizer = text.Tokenizer.from_step(kinds[text.STEP_KIND], package)
        inputs = {tokenizer.input: tokenizer.encode_batch(texts)}
    return Samples(inputs, None, [t.encode() for t in texts], source, list(texts))


def load_samples(path: str | Path, manifest: Manifest, package: Path) -> Samples:
    """Read an eval or calibration file for `manifest`'s model (see the module docstring)."""
    file = Path(path)
    if not file.is_file():
        raise NotFound(f"{file}: no such file")
    if file.suffix == ".npz":
        samples = _read_npz(file, manifest)
    elif file.suffix == ".txt":
        samples = _read_text(file, manifest, package)
    else:
        raise InvalidInput(f"{file}: expected a .npz of input arrays (and labels) or a .txt of texts")
    if len(samples) == 0:
        raise InvalidInput(f"{file}: holds no samples")
    return samples


def ensure_disjoint(part: Samples, evaluation: Samples, what: str = "calibration") -> None:
    """Refuse a calibration (or confirmation, training) set that shares samples with the eval set."""
    eval_keys = set(evaluation.keys)
    shared = [i for i, key in enumerate(part.keys) if key in eval_keys]
    if shared:
        raise InvalidInput(
            f"the {what} set {part.source} shares {len(shared)} of its {len(part)} samples "
            f"with the eval set {evaluation.source} (first: {what} sample #{shared[0]}); "
            f"{what} and eval must be different samples"
        )
