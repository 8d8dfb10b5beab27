"""The TF-IDF + logistic-regression baseline, on the same split, that the LSTM must at least match."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tfidf_logreg(train_texts: Sequence[str], train_labels: np.ndarray, test_texts: Sequence[str]) -> np.ndarray:
    """Predicted label indices for `test_texts`: word uni+bigrams, sublinear TF, balanced classes."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        LogisticRegression(C=4.0, max_iter=1000, class_weight="balanced"),
    )
    return pipeline.fit(list(train_texts), train_labels).predict(list(test_texts))
