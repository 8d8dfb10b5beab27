"""The seed's CNN, with its two bugs fixed.

The seed's example used `F` without importing `torch.nn.functional`, and sized `fc1` for
64×6×6 features where two 2×2 pools over a 32×32 input leave 64×8×8. Both are fixed here;
the architecture is otherwise the seed's: two 3×3 conv+ReLU+pool blocks, two linear layers.
The widths are constructor arguments (the seed's by default) so that a smaller model of the
same family — a distilled student — is this class with other numbers, described by data. So is
the first convolution's stride: a student may read the image at half the resolution, which
quarters the work of every layer after it (`CHEAPER`); whether it still answers as the teacher
does is for the search to measure, not to assume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeedCNN(nn.Module):
    #: The constructor arguments that set inner layers' widths (what a distilled student narrows).
    WIDTHS = ("conv1", "conv2", "hidden")
    #: Constructor arguments beyond the widths that give a cheaper student of the same family.
    CHEAPER = {"stride": 2}

    def __init__(self, num_classes: int = 10, conv1: int = 32, conv2: int = 64, hidden: int = 512,
                 stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2, 4, 8):
            raise ValueError(f"stride {stride}: the 32×32 input is pooled twice after the first convolution, "
                             "so the stride must divide 8 (1, 2, 4 or 8)")
        self.conv1 = nn.Conv2d(3, conv1, kernel_size=3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(conv1, conv2, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        side = 8 // stride
        self.fc1 = nn.Linear(conv2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def constructor_kwargs(self) -> dict[str, int]:
        """What rebuilds this architecture around saved weights, read off its layers."""
        return {"num_classes": self.fc2.out_features, "conv1": self.conv1.out_channels,
                "conv2": self.conv2.out_channels, "hidden": self.fc1.out_features, "stride": self.conv1.stride[0]}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(image)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
