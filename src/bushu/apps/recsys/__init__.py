"""Recommendation: matrix factorisation on synthetic logs whose true preferences are known."""

from bushu.apps.recsys.model import MatrixFactorization
from bushu.apps.recsys.train import TrainedRecsys, package, train

__all__ = ["MatrixFactorization", "TrainedRecsys", "package", "train"]
