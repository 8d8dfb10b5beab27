"""Matrix factorisation: a user's score for every item is their factors' dot product plus item bias.

It is the model family the synthetic logs are drawn from, trained with a full softmax over
items — the very likelihood of a user picking an item — so it can approach the oracle.
The served graph maps user ids to scores over all items; excluding seen items is post-processing.
"""

from __future__ import annotations

import torch
from torch import nn


class MatrixFactorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int = 8) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, factors)
        self.items = nn.Embedding(n_items, factors)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def constructor_kwargs(self) -> dict[str, int]:
        """What rebuilds this architecture around saved weights, read off its layers."""
        return {"n_users": self.users.num_embeddings, "n_items": self.items.num_embeddings,
                "factors": self.users.embedding_dim}

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        """INT64 [batch] user ids → FP32 [batch, n_items] scores."""
        return self.users(user) @ self.items.weight.T + self.item_bias
