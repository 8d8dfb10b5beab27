"""A translator: a small Marian on pycountry's English → German names, beside copy and dictionary baselines."""

from bushu.apps.translate.train import TrainedTranslator, package, train

__all__ = ["TrainedTranslator", "package", "train"]
