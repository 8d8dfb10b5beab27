"""Recall@k and NDCG@k on held-out interactions, for a model's scores and for the oracle's.

Items a user already saw in training are excluded before ranking, as the served model does,
so the model and the oracle are ranked under the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k_unseen(scores: np.ndarray, seen: Sequence[np.ndarray], k: int) -> np.ndarray:
    """INT64 [n_users, k]: each row's k best-scored items that the user has not seen."""
    masked = scores.astype(np.float64, copy=True)
    for user, items in enumerate(seen):
        masked[user, items] = -np.inf
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def recall_ndcg(ranked: np.ndarray, held_out: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean recall@k (hits / min(k, held-out)) and NDCG@k (binary relevance) over users."""
    k = ranked.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for row, truth in zip(ranked, held_out):
        hits = np.isin(row, truth)
        ideal = min(k, len(truth))
        recalls.append(hits.sum() / ideal)
        ndcgs.append((hits * discounts).sum() / discounts[:ideal].sum())
    return float(np.mean(recalls)), float(np.mean(ndcgs))
