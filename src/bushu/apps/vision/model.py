"""The seed's CNN, with its two bugs fixed.

The seed's example used `F` without importing `torch.nn.functional`, and sized `fc1` for
64×6×6 features where two 2×2 pools over a 32×32 input leave 64×8×8. Both are fixed here;
the architecture is otherwise the seed's: two 3×3 conv+ReLU+pool blocks, two linear layers.
The widths are constructor arguments (the seed's by default) so that a smaller model of the
same family — a distilled student — is this class with other numbers, described by data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeedCNN(nn.Module):
    #: The constructor arguments that set inner layers' widths (what a distilled student narrows).
    WIDTHS = ("conv1", "conv2", "hidden")

    def __init__(self, num_classes: int = 10, conv1: int = 32, conv2: int = 64, hidden: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, conv1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(conv1, conv2, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(conv2 * 8 * 8, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def constructor_kwargs(self) -> dict[str, int]:
        """What rebuilds this architecture around saved weights, read off its layers."""
        return {"num_classes": self.fc2.out_features, "conv1": self.conv1.out_channels,
                "conv2": self.conv2.out_channels, "hidden": self.fc1.out_features}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(image)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
