import numpy as np
import pytest

from bushu.optimize.data_checks import check_data, mean_pairwise_cosine, near_duplicate_share
from bushu.optimize.default_data import default_texts
from bushu.optimize.fidelity import Metric, bootstrap_error
from bushu.optimize.samples import Samples


def _texts(texts):
    return Samples({"ids": np.zeros((len(texts), 4), np.int64)}, None, [t.encode() for t in texts], "t", texts)


def test_spread_is_the_mean_cosine_between_different_samples():
    assert mean_pairwise_cosine(np.ones((5, 3))) == pytest.approx(1.0)
    assert mean_pairwise_cosine(np.eye(4)) == pytest.approx(0.0)


def test_small_narrow_and_duplicated_data_each_get_a_warning_that_says_what_was_measured(rng):
    agreement = Metric("top1_agreement", "logits", True)
    small = Samples({"x": rng.standard_normal((50, 6)).astype(np.float32)}, None, [bytes([i]) for i in range(50)], "s")
    one_class = np.tile([0.0, 5.0, 0.0], (50, 1))
    warnings = check_data(agreement, 0.01, {"selection": small}, {"selection": one_class})
    assert any("one sample moves top1_agreement by 0.02, more than the allowed error 0.01" in w for w in warnings)
    assert any("narrow data: the source predicts 1 of 3 classes, the commonest for 100%" in w for w in warnings)
    varied = rng.standard_normal((300, 3))
    big = Samples({"x": rng.standard_normal((300, 6)).astype(np.float32)}, None, [i.to_bytes(2) for i in range(300)], "b")
    assert check_data(agreement, 0.01, {"selection": big}, {"selection": varied}) == []
    cosine = Metric("cosine", "embedding", True)
    alike = np.ones((300, 8)) + 0.01 * rng.standard_normal((300, 8))
    assert "mean pairwise cosine of 1.000" in " ".join(check_data(cosine, 0.01, {"selection": big}, {"selection": alike}))
    half_alike = np.concatenate([np.eye(8)[:1].repeat(130, 0), np.eye(8)[1:].repeat(20, 0)])  # half one way
    assert 0.3 > mean_pairwise_cosine(half_alike) > 2 * mean_pairwise_cosine(np.eye(8).repeat(5, 0))
    assert check_data(cosine, 0.01, {"selection": big}, {"selection": half_alike}) == []  # under the fixed 0.3
    warned = check_data(cosine, 0.01, {"selection": big}, {"selection": half_alike}, broad=np.eye(8).repeat(5, 0))
    assert len(warned) == 1 and "bushu's broad default texts" in warned[0]
    texts = _texts(["Great phone!", "great phone", "GREAT PHONE 2", "slow delivery", "a different one"])
    assert near_duplicate_share([texts]) == pytest.approx(3 / 5)  # case, digits and punctuation ignored


def test_the_bootstrap_interval_is_of_the_paired_error_and_brackets_it(rng):
    reference = rng.standard_normal((400, 3))
    got = reference.copy()
    got[:40] = got[:40][:, ::-1] * np.array([1, 1, 1]) + np.array([0, 0, 10])  # 10% of the top-1s moved
    metric = Metric("top1_agreement", "logits", True)
    error = metric.error(metric.score(got, reference, None), 1.0)
    low, high = bootstrap_error(metric, got, reference, None, rounds=300)
    assert low < error < high and high - low < 0.1


def test_default_texts_mix_every_source_and_leave_out_what_they_are_told():
    mix = default_texts(30, seed=0)
    assert len(mix.sources) == 3 and len(mix.texts) == 30
    assert default_texts(30, seed=0).texts == mix.texts  # offline and deterministic
    without = default_texts(30, seed=0, exclude=frozenset(mix.texts[:5]))
    assert not set(mix.texts[:5]) & set(without.texts)
    lengths = [len(t.split()) for t in mix.texts]
    assert min(lengths) <= 3 and max(lengths) >= 12  # names, tweets and prose: short and long
