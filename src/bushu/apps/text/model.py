"""A bidirectional LSTM sentiment classifier whose answer does not depend on the padding.

Texts arrive right-padded with id 0. A forward LSTM's output at a position depends only on the
tokens before it, so padding after a text cannot change its outputs over the real tokens. The
backward direction would read the padding first, so instead of `bidirectional=True` a second
LSTM reads each text reversed *within its own length* (a gather; the padding stays at the end).
Both are then mean- and max-pooled over the real tokens only (the mask `ids != 0`), beside the
mean of the word embeddings themselves — a direct bag-of-words path, the signal a TF-IDF model
lives on, which the recurrent states then refine with word order. A padded
batch and a text alone therefore agree, and the graph exports to ONNX as plain tensor ops —
no packed sequences, whose export is where lengths silently go wrong.

`directions=1` drops the backward reader: half the recurrent work and no reversing gather, the
cheaper form of this family a distilled student may take (`CHEAPER`).
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    #: The constructor arguments that set inner layers' widths (what a distilled student narrows).
    WIDTHS = ("embed_dim", "hidden")
    #: Constructor arguments beyond the widths that give a cheaper student of the same family.
    CHEAPER = {"directions": 1}

    def __init__(self, vocab_size: int, num_classes: int = 3, embed_dim: int = 128,
                 hidden: int = 64, dropout: float = 0.3, directions: int = 2) -> None:
        super().__init__()
        if directions not in (1, 2):
            raise ValueError(f"directions {directions}: the classifier reads a text forward (1) or both ways (2)")
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.forward_lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(embed_dim, hidden, batch_first=True) if directions == 2 else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * directions * hidden + embed_dim, num_classes)

    def constructor_kwargs(self) -> dict[str, int]:
        """What rebuilds this architecture around saved weights, read off its layers (dropout
        does not shape a weight)."""
        return {"vocab_size": self.embed.num_embeddings, "num_classes": self.head.out_features,
                "embed_dim": self.embed.embedding_dim, "hidden": self.forward_lstm.hidden_size,
                "directions": 1 if self.backward_lstm is None else 2}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """INT64 [batch, sequence] right-padded ids → FP32 [batch, classes] logits."""
        mask = ids != 0
        lengths = mask.sum(1, keepdim=True)
        embedded = self.dropout(self.embed(ids))
        states, _ = self.forward_lstm(embedded)
        if self.backward_lstm is not None:
            positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
            reverse = torch.where(positions < lengths, lengths - 1 - positions, positions)
            behind, _ = self.backward_lstm(embedded.gather(1, reverse.unsqueeze(-1).expand_as(embedded)))
            states = torch.cat([states, behind], dim=2)
        weights = mask.unsqueeze(-1).to(states.dtype)
        count = lengths.clamp(min=1).to(states.dtype)
        mean = (states * weights).sum(1) / count
        largest = states.masked_fill(~mask.unsqueeze(-1), -1e4).max(1).values
        words = (embedded * weights).sum(1) / count
        return self.head(self.dropout(torch.cat([mean, largest, words], dim=1)))
