"""Text → token tensors for Hugging Face encoders (`Step(kind="hf_tokenize")`).

The tokenizer travels inside the package as a Hugging Face `tokenizer.json`; the step's
params say where it is and how to pad and truncate. The packer, the optimiser (text eval and
calibration files) and the server all tokenize through this one function.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bushu.errors import BushuError, InvalidInput, PackageError
from bushu.package.manifest import Step
from bushu.runtime.base import FileReader, disk_reader

STEP_KIND = "hf_tokenize"
INSTALL_HINT = "text packages need the tokenizers package: pip install 'bushu[hf]'"


def tokenize_step(file: str, max_length: int, input_names: Sequence[str]) -> Step:
    """The manifest step that `tokenize` carries out."""
    return Step(kind=STEP_KIND, params={"file": file, "max_length": max_length, "inputs": list(input_names)})


def load_tokenizer(step: Step, read: FileReader) -> Any:  # -> tokenizers.Tokenizer
    """The step's `tokenizer.json`, from the package's (hashed) bytes."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise BushuError(INSTALL_HINT, status=503) from None
    file = step.params["file"]
    data = read(file)
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # UnicodeDecodeError, or tokenizers' plain Exception for bad JSON
        raise PackageError(f"cannot read the tokenizer {file}: {exc}") from None


def tokenize(
    texts: Sequence[str], step: Step, package: Path | FileReader | Any, *, pad_to: int | None = None
) -> dict[str, np.ndarray]:
    """Token ids and attention mask (INT64 [batch, sequence]) for `texts`.

    `package` is the package directory, a reader of its files, or a tokenizer `load_tokenizer`
    made once (the way to tokenize many batches). Sequences are truncated to the step's
    `max_length` and padded to the longest in the batch, or to `pad_to` when given (a fixed
    shape, as benchmarks want).
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InvalidInput("tokenize expects a list of strings")
    if not texts:
        raise InvalidInput("tokenize needs at least one text")
    params = step.params
    if isinstance(package, Path):
        package = disk_reader(package)
    # padding and truncation are set per call: on a copy of a tokenizer that is kept for more
    tokenizer = load_tokenizer(step, package) if callable(package) else copy.copy(package)
    max_length = int(pad_to or params["max_length"])
    tokenizer.enable_truncation(max_length=max_length)
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    tokenizer.enable_padding(pad_id=pad_id, length=pad_to)
    encodings = tokenizer.encode_batch(list(texts))
    arrays = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return {name: arrays[name] for name in params.get("inputs", ["input_ids", "attention_mask"])}
