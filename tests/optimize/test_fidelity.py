import numpy as np
import pytest

from bushu.errors import InvalidInput
from bushu.optimize.fidelity import Metric, choose_metric
from bushu.package import read_manifest


def test_the_natural_metric_follows_labels_and_outputs(tiny_package):
    manifest = read_manifest(tiny_package)  # a classifier: labels a, b, c
    assert choose_metric(manifest, None, has_labels=True).name == "accuracy"
    assert choose_metric(manifest, None, has_labels=False).name == "top1_agreement"
    assert choose_metric(manifest, "relative_error", has_labels=False).higher_is_better is False
    with pytest.raises(InvalidInput, match="needs labels"):
        choose_metric(manifest, "accuracy", has_labels=False)
    with pytest.raises(InvalidInput, match="unknown metric"):
        choose_metric(manifest, "bleu", has_labels=True)


def test_cosine_is_the_worst_sample_not_the_mean(rng):
    reference = rng.standard_normal((10, 8))
    got = reference.copy()
    got[3] = -got[3]  # one sample flipped
    value = Metric("cosine", "embedding", True).score(got, reference, None)
    assert value == pytest.approx(-1.0)
    assert Metric("cosine", "embedding", True).error(value, 1.0) == pytest.approx(2.0)


def test_agreement_and_accuracy_count_argmax():
    reference = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    got = np.array([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
    assert Metric("top1_agreement", "logits", True).score(got, reference, None) == 0.75
    assert Metric("accuracy", "logits", True).score(got, reference, np.array([1, 1, 0, 0])) == 0.75


def test_macro_f1_weighs_every_class_alike_as_scikit_learn_does(rng, tiny_package):
    from sklearn.metrics import f1_score

    labels = rng.choice(3, 200, p=[0.7, 0.2, 0.1])
    predicted = np.where(rng.random(200) < 0.8, labels, rng.integers(0, 3, 200))
    logits = np.eye(3)[predicted]
    value = Metric("macro_f1", "logits", True).score(logits, logits, labels)
    assert value == pytest.approx(f1_score(labels, predicted, average="macro"))
    always_majority = Metric("macro_f1", "logits", True).score(np.eye(3)[np.zeros(200, int)], logits, labels)
    assert always_majority < 0.35 < float((labels == 0).mean())  # accuracy would call it 0.7
    with pytest.raises(InvalidInput, match="'macro_f1' needs labels"):
        choose_metric(read_manifest(tiny_package), "macro_f1", has_labels=False)
