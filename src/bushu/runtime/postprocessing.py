"""Post-processing steps named in a manifest: model outputs → what an application wants
(labels with probabilities, top-k). One implementation, used by the app routes and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bushu.errors import InvalidInput
from bushu.package.manifest import Manifest, Step


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _label(manifest: Manifest, index: int) -> str:
    return manifest.labels[index] if manifest.labels and index < len(manifest.labels) else str(index)


def postprocess(manifest: Manifest, outputs: dict[str, np.ndarray], steps: Sequence[Step] | None = None,
                overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One result per row of the batch. Without steps, each row's outputs as lists."""
    steps = manifest.postprocessing if steps is None else steps
    rows = len(next(iter(outputs.values())))
    results: list[dict[str, Any]] = [{} for _ in range(rows)]
    scores: np.ndarray | None = None
    for step in steps:
        params = {**step.params, **(overrides or {})}
        if step.kind == "softmax":
            name = params.get("output", manifest.outputs[0].name)
            scores = softmax(outputs[name].astype(np.float64))
            for result, row in zip(results, scores):
                best = int(row.argmax())
                result["label"] = _label(manifest, best)
                result["probabilities"] = {_label(manifest, i): float(p) for i, p in enumerate(row)}
        elif step.kind == "top_k":
            if scores is None:
                scores = outputs[params.get("output", manifest.outputs[0].name)]
            k = int(params.get("k", 5))
            if k < 1:
                raise InvalidInput(f"k must be at least 1, got {k}")
            for result, row in zip(results, scores):
                order = np.argsort(-row, kind="stable")[:k]
                result["top_k"] = [{"label": _label(manifest, int(i)), "score": float(row[i])} for i in order]
        else:
            raise InvalidInput(f"unknown post-processing step {step.kind!r}")
    if not steps:
        for i, result in enumerate(results):
            result.update({name: value[i].tolist() for name, value in outputs.items()})
    return results
