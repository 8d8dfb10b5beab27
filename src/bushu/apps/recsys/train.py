"""Train matrix factorisation on the synthetic logs, rank held-out items against the oracle, package it.

The package's graph maps user ids to scores over all items; the items each user saw in
training travel as `recsys/seen.npz` and the `top_k_unseen` post-processing step drops them,
so the served top-k is ranked exactly as evaluated here.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bushu.apps.recsys.data import Interactions, generate
from bushu.apps.recsys.metrics import recall_ndcg, top_k_unseen
from bushu.apps.recsys.model import MatrixFactorization
from bushu.export.pack import pack_module
from bushu.export.specs import parse_input_spec
from bushu.package.manifest import Manifest, Step, TensorSpec

#: Called after each epoch with (epoch, epochs, mean training loss).
Progress = Callable[[int, int, float], None]
SEEN_FILE = "recsys/seen.npz"
K = 10


@dataclass
class Ranking:
    recall: float
    ndcg: float


@dataclass
class TrainedRecsys:
    module: MatrixFactorization
    data: Interactions
    ranking: Ranking
    oracle: Ranking
    train_seconds: float


def train(epochs: int = 20, seed: int = 0, n_users: int = 2000, n_items: int = 400,
          factors: int = 8, batch_size: int = 250, progress: Progress | None = None) -> TrainedRecsys:
    """Fit the factors by the multinomial likelihood of each user's training items.

    That is a full softmax over items for every interaction — the very process the logs were
    drawn from — computed a batch of users at a time, which keeps the steps few and large.
    """
    import torch

    torch.manual_seed(seed)
    data = generate(n_users=n_users, n_items=n_items, seed=seed)
    seen = torch.zeros(data.n_users, data.n_items)
    for user, items in enumerate(data.train):
        seen[user, torch.from_numpy(items)] = 1.0
    model = MatrixFactorization(data.n_users, data.n_items, factors)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for users in torch.randperm(data.n_users, generator=generator).split(batch_size):
            optimizer.zero_grad()
            log_p = torch.log_softmax(model(users), dim=1)
            target = seen[users]
            loss = -(log_p * target).sum() / target.sum()
            # L2 on this batch's user factors and all item factors, per interaction.
            penalty = model.users(users).pow(2).sum() + model.items.weight.pow(2).sum()
            (loss + 1e-4 * penalty / target.sum()).backward()
            optimizer.step()
            total += loss.item() * len(users)
        if progress:
            progress(epoch + 1, epochs, total / data.n_users)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        scores = model(torch.arange(data.n_users)).numpy()
    return TrainedRecsys(model, data, evaluate(scores, data), evaluate(data.affinity, data), seconds)


def evaluate(scores: np.ndarray, data: Interactions, k: int = K) -> Ranking:
    """Recall@k and NDCG@k of `scores` [n_users, n_items] on the held-out interactions."""
    return Ranking(*recall_ndcg(top_k_unseen(scores, data.train, k), data.test))


def seen_npz(data: Interactions) -> bytes:
    """The training items per user as a CSR pair (indptr, indices) in an .npz: arrays, no pickle."""
    indptr = np.concatenate([[0], np.cumsum([len(items) for items in data.train])]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, indptr=indptr, indices=np.concatenate(data.train).astype(np.int64))
    return buffer.getvalue()


def package(trained: TrainedRecsys, out: str | Path, *, force: bool = False) -> Manifest:
    data = trained.data
    return pack_module(
        trained.module,
        [TensorSpec.model_validate({**parse_input_spec("user:INT64:batch").model_dump(),
                                    "range": (0, data.n_users)})],
        out,
        name="recsys-mf",
        task="recommendation",
        output_names=["scores"],
        postprocessing=[Step(kind="top_k_unseen", params={
            "k": K, "scores": "scores", "input": "user", "seen": SEEN_FILE, "n_users": data.n_users,
        })],
        metrics={
            f"test_recall_at_{K}": trained.ranking.recall,
            f"test_ndcg_at_{K}": trained.ranking.ndcg,
            f"oracle_recall_at_{K}": trained.oracle.recall,
            f"oracle_ndcg_at_{K}": trained.oracle.ndcg,
            "train_seconds": round(trained.train_seconds, 2),
            "users": float(data.n_users),
            "items": float(data.n_items),
            "train_interactions": float(sum(len(t) for t in data.train)),
            "test_interactions": float(sum(len(t) for t in data.test)),
        },
        source="bushu.apps.recsys.model:MatrixFactorization",
        source_kwargs=trained.module.constructor_kwargs(),
        value_ranges={"user": (0, data.n_users)},
        extra_files={SEEN_FILE: seen_npz(data)},
        force=force,
    )
