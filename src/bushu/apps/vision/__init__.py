"""Image classification: the seed's CNN on scikit-learn's digits."""

from bushu.apps.vision.model import SeedCNN
from bushu.apps.vision.train import TrainedVision, package, train

__all__ = ["SeedCNN", "TrainedVision", "package", "train"]
