import numpy as np
import pytest

from bushu.apps.text.word_vectors import minilm_word_vectors
from bushu.runtime.text import PAD, UNK, URL, USER

VOCAB = (PAD, UNK, URL, USER, "good", "great", "excellent", "terrible", "awful", "table", "chair", "the", "!")


@pytest.fixture(scope="module")
def vectors():
    return minilm_word_vectors(VOCAB, 8)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_one_row_per_word_padding_zero_unit_spread(vectors):
    assert vectors.shape == (len(VOCAB), 8) and vectors.dtype == np.float32
    assert not vectors[0].any() and vectors[2:].std() == pytest.approx(1, rel=1e-4)
    assert np.array_equal(vectors, minilm_word_vectors(VOCAB, 8))  # no randomness


def test_words_start_near_words_of_like_meaning(vectors):
    """The point of starting from MiniLM: sentiment words are already placed by meaning."""
    row = {w: vectors[i] for i, w in enumerate(VOCAB)}
    assert _cos(row["good"], row["great"]) > _cos(row["good"], row["table"])
    assert _cos(row["terrible"], row["awful"]) > _cos(row["terrible"], row["chair"])
    assert _cos(row["table"], row["chair"]) > _cos(row["table"], row["awful"])


def test_more_dimensions_than_minilm_has_are_refused():
    with pytest.raises(ValueError, match="384 dimensions; asked for 500"):
        minilm_word_vectors(VOCAB, 500)
