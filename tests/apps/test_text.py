import numpy as np
import pytest
import torch
from safetensors.torch import load_model

import bushu
from bushu.apps.text import LSTMClassifier
from bushu.apps.text.data import LABELS, load_corpus, load_split
from bushu.errors import InvalidInput
from bushu.export.compare import relative_error
from bushu.package import read_manifest
from bushu.runtime.postprocessing import Postprocessor
from bushu.runtime.text import Tokenizer


@pytest.fixture(scope="module")
def packaged(text_package):
    manifest = read_manifest(text_package)
    tokenizer = Tokenizer.from_manifest(manifest, text_package)
    module = LSTMClassifier(**manifest.provenance.source_kwargs)
    load_model(module, str(text_package / manifest.provenance.weights_file))
    return manifest, tokenizer, module.eval()


def test_the_corpus_is_empythys_38k_texts_without_duplicates():
    texts, labels = load_corpus()
    assert 37_000 < len(texts) < 38_158  # 38,158 rows, some of them repeats
    assert len(set(texts)) == len(texts)
    assert np.bincount(labels).tolist()[0] > np.bincount(labels).tolist()[2] > 0
    split = load_split()
    assert not set(split.train_texts) & set(split.test_texts)
    # stratified: each class is the same share of both sides
    np.testing.assert_allclose(np.bincount(split.train_labels) / len(split.train_labels),
                               np.bincount(split.test_labels) / len(split.test_labels), atol=1e-3)


def test_the_package_declares_its_tokenizer_labels_and_both_scores(text_package, packaged):
    manifest, tokenizer, _ = packaged
    assert manifest.labels == LABELS
    (ids,) = manifest.inputs
    assert (ids.name, ids.datatype, ids.shape, ids.dims) == ("ids", "INT64", [-1, -1], ["batch", "sequence"])
    assert [s.kind for s in manifest.preprocessing] == ["tokenize"]
    assert [s.kind for s in manifest.postprocessing] == ["softmax", "top_k"]
    assert "tokenizer/vocab.json" in manifest.files
    for key in ("test_macro_f1", "test_accuracy", "baseline_tfidf_logreg_macro_f1", "baseline_tfidf_logreg_accuracy"):
        assert 0.3 < manifest.metrics[key] <= 1.0
    # the export was verified at several sequence lengths (see export), within the tolerance
    assert manifest.variants["onnx-fp32"].max_rel_error["logits"] < 1e-4


def test_served_probabilities_equal_the_trained_modules(text_package, packaged):
    manifest, tokenizer, module = packaged
    texts = load_split().test_texts[:200]
    ids = tokenizer.encode_batch(texts)  # the package's own declared pre-processing
    outputs = bushu.load(text_package).infer({"ids": ids})
    served = Postprocessor.for_package(manifest, text_package)(outputs, {"ids": ids})
    with torch.no_grad():
        trained = torch.softmax(module(torch.from_numpy(ids)), dim=1).numpy()
    assert relative_error(served["probabilities"], trained) < 1e-5
    assert set(served["labels"][:, 0]) <= set(LABELS)


def test_padding_does_not_change_an_answer(text_package, packaged):
    _, tokenizer, module = packaged
    texts = ["what a great day :)", "this is the worst service ever, never again", "ok"]
    alone = [tokenizer.encode_batch([t]) for t in texts]
    batch = tokenizer.encode_batch(texts)
    longer = np.pad(batch, ((0, 0), (0, 20)))
    model = bushu.load(text_package)
    with torch.no_grad():
        each = np.concatenate([module(torch.from_numpy(a)).numpy() for a in alone])
        np.testing.assert_allclose(module(torch.from_numpy(batch)).numpy(), each, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(module(torch.from_numpy(longer)).numpy(), each, rtol=1e-5, atol=1e-6)
    served = np.concatenate([model.infer({"ids": a})["logits"] for a in alone])
    np.testing.assert_allclose(model.infer({"ids": longer})["logits"], served, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served, each, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("directions", [1, 2])
def test_either_form_answers_a_text_alike_alone_or_padded(directions):
    """The forward-only form (a student's cheaper form) keeps the padding rule: untrained weights
    suffice, since the rule is the graph's, not the training's."""
    torch.manual_seed(0)
    module = LSTMClassifier(50, embed_dim=8, hidden=4, directions=directions).eval()
    assert module.constructor_kwargs()["directions"] == directions
    texts = [torch.tensor([[5, 9, 2, 7]]), torch.tensor([[3, 1]])]
    padded = torch.tensor([[5, 9, 2, 7, 0, 0], [3, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        each = torch.cat([module(t) for t in texts])
        torch.testing.assert_close(module(padded), each, rtol=1e-5, atol=1e-6)


def test_a_third_direction_is_refused():
    with pytest.raises(ValueError, match="directions 3: .*forward \\(1\\) or both ways \\(2\\)"):
        LSTMClassifier(50, directions=3)


def test_empty_text_is_refused_before_the_model(packaged):
    _, tokenizer, _ = packaged
    with pytest.raises(InvalidInput, match="no tokens"):
        tokenizer.encode_batch(["fine", "  "])


@pytest.mark.slow
def test_the_full_lstm_at_least_matches_the_tfidf_baseline():
    from bushu.apps.text import train

    trained = train()
    assert trained.lstm.accuracy > 0.74
    assert trained.lstm.macro_f1 >= trained.baseline.macro_f1
