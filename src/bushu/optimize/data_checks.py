"""Is the user's data enough to support the budget? Three measured warnings, never a refusal.

- count: the selection and confirmation parts each need enough samples; for accuracy or
  agreement, one sample must move the metric by less than the allowed error, or the budget
  cannot even be resolved;
- spread of the source's outputs: embeddings that all point one way (high mean pairwise
  cosine, against twice that of bushu's broad default texts where the package takes text, else
  against a fixed 0.3), or a classifier whose predictions fall in few classes, come from narrow
  inputs;
- near-duplicates: texts equal once case, digits and punctuation are dropped, or tensors whose
  cosine is ≥ 0.999, count once in spirit and many times in the metric.
"""

from __future__ import annotations

import re

import numpy as np

from bushu.optimize.fidelity import Metric
from bushu.optimize.samples import Samples

MIN_SAMPLES = 100
#: Mean pairwise cosine of the source's outputs above which inputs are called narrow, without a
#: broad set to compare with; with one, above this many times the broad set's. Measured with
#: MiniLM: bushu's default texts 0.084, scikit-learn's dataset descriptions 0.148, 336 short
#: review-style sentences 0.261.
NARROW_COSINE = 0.3
NARROW_FACTOR = 2.0
#: Share of one predicted class above which a classifier's eval set is called narrow.
NARROW_CLASS_SHARE = 0.9
NEAR_DUPLICATE_COSINE = 0.999
NEAR_DUPLICATE_SHARE = 0.05
_MAX_PAIRS = 2000  # samples compared pairwise at most


def _unit_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def mean_pairwise_cosine(outputs: np.ndarray) -> float:
    unit = _unit_rows(outputs[:_MAX_PAIRS])
    n = len(unit)
    if n < 2:
        return 1.0
    total = np.square(unit.sum(0)).sum()  # sum over all ordered pairs, self-pairs included
    return float((total - n) / (n * (n - 1)))


def near_duplicate_share(parts: list[Samples]) -> float:
    """The share of samples with a near-identical other sample, within or across `parts`."""
    if all(p.texts is not None for p in parts):
        normal = [re.sub(r"[\W\d_]+", " ", t.lower()).strip() for p in parts for t in p.texts or []]
        counts: dict[str, int] = {}
        for t in normal:
            counts[t] = counts.get(t, 0) + 1
        return sum(1 for t in normal if counts[t] > 1) / len(normal)
    shapes = {tuple((k, v.shape[1:], v.dtype) for k, v in p.inputs.items()) for p in parts}
    if len(shapes) > 1:  # parts from different files: judged one by one
        return max(near_duplicate_share([p]) for p in parts)
    floats = [np.concatenate([p.inputs[k] for p in parts]) for k, v in parts[0].inputs.items()
              if np.issubdtype(v.dtype, np.floating)]
    if not floats:
        return 0.0
    unit = _unit_rows(np.concatenate([v[:_MAX_PAIRS].reshape(min(len(v), _MAX_PAIRS), -1) for v in floats], 1))
    similar = unit @ unit.T
    np.fill_diagonal(similar, -1)
    return float((similar.max(1) >= NEAR_DUPLICATE_COSINE).mean())


def _narrow(metric: Metric, outputs: np.ndarray, broad: np.ndarray | None) -> str | None:
    if metric.name == "cosine" or outputs.ndim != 2 or metric.name == "relative_error":
        spread = mean_pairwise_cosine(outputs)
        if broad is None:
            limit, against = NARROW_COSINE, ""
        else:
            broad_spread = mean_pairwise_cosine(broad)
            limit, against = NARROW_FACTOR * broad_spread, f", {NARROW_FACTOR:g}× the {broad_spread:.3f} of bushu's broad default texts"
        if spread > limit:
            return (f"narrow data: the source's outputs have a mean pairwise cosine of {spread:.3f} "
                    f"(> {limit:.3f}{against}): they are much alike, so the budget may not hold on inputs of "
                    "another kind")
        return None
    share = np.bincount(outputs.argmax(-1), minlength=outputs.shape[-1]) / len(outputs)
    if share.max() > NARROW_CLASS_SHARE or (share == 0).any():
        return (f"narrow data: the source predicts {int((share > 0).sum())} of {outputs.shape[-1]} classes, "
                f"the commonest for {share.max():.0%} of the samples")
    return None


def check_data(metric: Metric, allowed: float, parts: dict[str, Samples], outputs: dict[str, np.ndarray],
               broad: np.ndarray | None = None) -> list[str]:
    """Warnings about `parts` (name → samples), given the source's `outputs` on each part (and on
    bushu's broad default data, where there is some, to judge their spread against)."""
    warnings: list[str] = []
    for name, part in parts.items():
        n = len(part)
        if metric.name in ("accuracy", "top1_agreement") and 1 / n > allowed:
            warnings.append(f"{name}: {n} samples — one sample moves {metric.name} by {1 / n:.4g}, more than the "
                            f"allowed error {allowed:.4g}: the budget cannot be resolved on so few")
        elif n < MIN_SAMPLES:
            warnings.append(f"{name}: only {n} samples (fewer than {MIN_SAMPLES}): the budget rests on a few inputs")
        if narrow := _narrow(metric, outputs[name], broad):
            warnings.append(f"{name}: {narrow}")
    duplicates = near_duplicate_share(list(parts.values()))
    if duplicates > NEAR_DUPLICATE_SHARE:
        warnings.append(f"near-duplicates: {duplicates:.0%} of the eval samples have a near-identical twin "
                        "(they count many times in the metric and once in what they show)")
    return warnings
