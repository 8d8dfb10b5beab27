"""Synthetic interaction logs drawn from a latent-factor model whose true preferences are known.

Each user and item has a hidden factor vector; a user's affinity for an item is their dot
product plus the item's popularity. Each user picks `per_user` distinct items with probability
proportional to exp(affinity) (Gumbel top-k: sampling without replacement), and a fifth of each
user's picks are held out. Because the affinities are known, an oracle ranking exists, and a
trained model's ranking quality can be stated as a fraction of the oracle's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Interactions:
    affinity: np.ndarray  # FP32 [n_users, n_items]: the true preferences, known only to the oracle
    train: list[np.ndarray]  # per user, the item ids seen in training
    test: list[np.ndarray]  # per user, the held-out item ids

    @property
    def n_users(self) -> int:
        return self.affinity.shape[0]

    @property
    def n_items(self) -> int:
        return self.affinity.shape[1]

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) INT64 arrays of every training interaction."""
        users = np.concatenate([np.full(len(items), u) for u, items in enumerate(self.train)])
        return users.astype(np.int64), np.concatenate(self.train).astype(np.int64)


def generate(n_users: int = 2000, n_items: int = 400, factors: int = 8, per_user: int = 40,
             held_out: float = 0.2, scale: float = 2.0, seed: int = 0) -> Interactions:
    """Draw a latent-factor world and its interaction log; the same seed gives the same log."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, factors)) / np.sqrt(factors)
    items = rng.standard_normal((n_items, factors))
    popularity = rng.normal(0.0, 0.5, n_items)
    affinity = (scale * users @ items.T + popularity).astype(np.float32)
    gumbel = rng.gumbel(size=affinity.shape)
    picks = np.argsort(-(affinity + gumbel), axis=1)[:, :per_user]
    n_test = max(1, round(per_user * held_out))
    train, test = [], []
    for row in picks:
        shuffled = rng.permutation(row)
        test.append(np.sort(shuffled[:n_test]))
        train.append(np.sort(shuffled[n_test:]))
    return Interactions(affinity, train, test)
