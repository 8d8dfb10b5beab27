"""The seed's CNN, with its two bugs fixed.

The seed's example used `F` without importing `torch.nn.functional`, and sized `fc1` for
64×6×6 features where two 2×2 pools over a 32×32 input leave 64×8×8. Both are fixed here;
the architecture is otherwise the seed's: two 3×3 conv+ReLU+pool blocks, two linear layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeedCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 8 * 8, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(image)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
