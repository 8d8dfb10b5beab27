import numpy as np
import pytest

from bushu.errors import InvalidInput, PackageError
from bushu.runtime.text import Tokenizer

TEXTS = ["I love it!!", "I hate it", "love love love", "meh :(", "@bob see https://x.co/a it's fine"]


@pytest.fixture
def tokenizer():
    return Tokenizer.build(TEXTS, min_count=1)


def test_tokens_keep_punctuation_and_normalise_links_and_mentions(tokenizer):
    assert tokenizer.tokens("I LOVE it!!") == ["i", "love", "it", "!", "!"]
    assert tokenizer.tokens("@bob see https://x.co/a it's fine") == ["<user>", "see", "<url>", "it's", "fine"]


def test_unknown_words_map_to_unk_and_batches_are_right_padded(tokenizer):
    ids = tokenizer.encode_batch(["love", "zebra love it"])
    assert ids.dtype == np.int64 and ids.shape == (2, 3)
    assert ids[0, 1:].tolist() == [0, 0]
    assert ids[1, 0] == 1  # <unk>
    assert ids[0, 0] == ids[1, 1] == tokenizer.vocab.index("love")


def test_texts_are_cut_at_max_length():
    tokenizer = Tokenizer.build(TEXTS, min_count=1, max_length=4)
    assert tokenizer.encode_batch(["a b c d e f g"]).shape == (1, 4)


@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_text_is_refused(tokenizer, bad):
    with pytest.raises(InvalidInput, match="no tokens"):
        tokenizer.encode(bad)


def test_non_text_and_empty_batches_are_refused(tokenizer):
    with pytest.raises(InvalidInput, match="expected text, got int"):
        tokenizer.encode_batch([3])
    with pytest.raises(InvalidInput, match="non-empty list"):
        tokenizer.encode_batch([])
    with pytest.raises(InvalidInput, match="non-empty list"):
        tokenizer.encode_batch("a single string")


def test_the_step_and_vocabulary_file_rebuild_the_same_tokenizer(tokenizer, tmp_path):
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.json").write_bytes(tokenizer.vocab_bytes())
    step = tokenizer.step("tokenizer/vocab.json")
    assert step.kind == "tokenize"
    again = Tokenizer.from_step(step, tmp_path)
    assert again == tokenizer
    np.testing.assert_array_equal(again.encode_batch(TEXTS), tokenizer.encode_batch(TEXTS))


def test_a_missing_or_malformed_vocabulary_is_a_package_error(tokenizer, tmp_path):
    step = tokenizer.step("tokenizer/vocab.json")
    with pytest.raises(PackageError, match="cannot read the vocabulary"):
        Tokenizer.from_step(step, tmp_path)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.json").write_text('["a", "b"]')
    with pytest.raises(PackageError, match="starts with"):
        Tokenizer.from_step(step, tmp_path)


def test_a_step_asking_for_rules_this_implementation_lacks_is_refused(tokenizer, tmp_path):
    step = tokenizer.step("tokenizer/vocab.json")
    cased = step.model_copy(update={"params": {**step.params, "lowercase": False}})
    with pytest.raises(PackageError, match="lowercase"):
        Tokenizer.from_step(cased, tmp_path)
