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
