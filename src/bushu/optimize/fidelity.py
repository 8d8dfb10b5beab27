"""How close a variant stays to what matters: accuracy on labels, or agreement with the source.

With labels, the metric is accuracy (or, asked for, macro-F1: every class weighs alike, which
matters where one class is rare, as in the sentiment texts). Without, a variant is compared with the source model's
own outputs (the fp32 baseline, itself verified against the source at export): the minimum
cosine similarity over the eval set for embeddings, top-1 agreement for classifiers, and the
relative error otherwise. The error is always "how much worse than the baseline", in the
metric's units, so one budget check serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bushu.errors import InvalidInput
from bushu.export.compare import relative_error
from bushu.optimize.config import METRICS
from bushu.package.manifest import Manifest


@dataclass(frozen=True)
class Metric:
    name: str
    output: str
    higher_is_better: bool

    def score(self, got: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
        """The metric of outputs `got` (for the whole eval set), against labels or the reference."""
        if self.name == "accuracy":
            if labels is None:
                raise InvalidInput("metric 'accuracy' needs labels in the eval set (a 'labels' array)")
            return float((got.argmax(-1) == labels).mean())
        if self.name == "macro_f1":
            if labels is None:
                raise InvalidInput("metric 'macro_f1' needs labels in the eval set (a 'labels' array)")
            return macro_f1(got.argmax(-1), labels)
        if self.name == "top1_agreement":
            return float((got.argmax(-1) == reference.argmax(-1)).mean())
        if self.name == "cosine":
            a = got.reshape(len(got), -1).astype(np.float64)
            b = reference.reshape(len(reference), -1).astype(np.float64)
            denom = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            return float(((a * b).sum(1) / denom).min())
        return relative_error(got, reference)

    def error(self, value: float, baseline: float) -> float:
        """How much worse than the baseline `value` is (negative when better)."""
        return baseline - value if self.higher_is_better else value - baseline


def macro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the classes present (in labels or predictions) of each class's F1."""
    scores = []
    for c in np.union1d(predicted, labels):
        hit = float(((predicted == c) & (labels == c)).sum())
        scores.append(2 * hit / ((predicted == c).sum() + (labels == c).sum()))
    return float(np.mean(scores))


def _classifier_output(manifest: Manifest) -> str | None:
    for spec in manifest.outputs:
        if len(spec.shape) == 2 and (manifest.labels or spec.name in ("logits", "scores", "probabilities")):
            return spec.name
    return None


def choose_metric(manifest: Manifest, requested: str | None, has_labels: bool) -> Metric:
    """The requested metric, or the natural one for this package and eval set."""
    names = [s.name for s in manifest.outputs]
    classifier = _classifier_output(manifest)
    embedding = "embedding" if "embedding" in names else None
    if requested is None:
        if has_labels and classifier:
            requested = "accuracy"
        elif embedding:
            requested = "cosine"
        elif classifier:
            requested = "top1_agreement"
        else:
            requested = "relative_error"
    if requested not in METRICS:
        raise InvalidInput(f"unknown metric {requested!r}; choose from {', '.join(METRICS)}")
    if requested in ("accuracy", "macro_f1", "top1_agreement"):
        if classifier is None:
            raise InvalidInput(f"metric {requested!r} needs a classifier output [batch, classes]; outputs are {names}")
        if requested in ("accuracy", "macro_f1") and not has_labels:
            raise InvalidInput(f"metric {requested!r} needs labels in the eval set (a 'labels' array)")
        return Metric(requested, classifier, True)
    if requested == "cosine":
        return Metric("cosine", embedding or names[0], True)
    return Metric("relative_error", names[0], False)


def bootstrap_error(metric: Metric, got: np.ndarray, reference: np.ndarray, labels: np.ndarray | None,
                    rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the error: the same resampled samples score the variant
    and the baseline (paired), so the interval is of the difference, not of two noisy levels.

    For the minimum cosine a resample can only miss the worst samples, so the interval sits at or
    below the error measured on all of them: read its upper end as "the error seen", its width
    as how much rests on a few samples.
    """
    rng = np.random.default_rng(seed)
    errors = np.empty(rounds)
    for i in range(rounds):
        pick = rng.integers(0, len(got), len(got))
        picked_labels = None if labels is None else labels[pick]
        errors[i] = metric.error(metric.score(got[pick], reference[pick], picked_labels),
                                 metric.score(reference[pick], reference[pick], picked_labels))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(errors, [tail, 100 - tail])
    return float(low), float(high)
