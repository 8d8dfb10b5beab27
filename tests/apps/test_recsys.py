import numpy as np
import pytest
import torch
from safetensors.torch import load_model

import bushu
from bushu.apps.recsys import MatrixFactorization
from bushu.apps.recsys.data import generate
from bushu.apps.recsys.metrics import recall_ndcg, top_k_unseen
from bushu.errors import InvalidInput
from bushu.export.compare import relative_error
from bushu.package import read_manifest
from bushu.runtime.postprocessing import Postprocessor


@pytest.fixture(scope="module")
def manifest(recsys_package):
    return read_manifest(recsys_package)


def test_recall_at_10_reaches_80_percent_of_the_oracles(manifest):
    m = manifest.metrics
    assert m["test_recall_at_10"] >= 0.8 * m["oracle_recall_at_10"]
    assert m["test_ndcg_at_10"] >= 0.7 * m["oracle_ndcg_at_10"]
    assert m["oracle_recall_at_10"] > 0.3  # the world has learnable structure at all
    assert m["test_interactions"] == 2000 * 8 and m["train_interactions"] == 2000 * 32


def test_the_synthetic_world_is_reproducible_and_splits_disjointly():
    a, b = generate(n_users=50, seed=3), generate(n_users=50, seed=3)
    np.testing.assert_array_equal(a.affinity, b.affinity)
    for train, test, again in zip(a.train, a.test, b.test):
        assert not set(train) & set(test)
        np.testing.assert_array_equal(test, again)
    assert not np.array_equal(generate(n_users=50, seed=4).affinity, a.affinity)


def test_metrics_on_a_hand_checked_ranking():
    ranked = np.array([[3, 1, 2], [0, 1, 2]])
    recall, ndcg = recall_ndcg(ranked, [np.array([1]), np.array([5, 6])])
    assert recall == pytest.approx((1 + 0) / 2)
    assert ndcg == pytest.approx((1 / np.log2(3)) / 2)
    scores = np.array([[9.0, 8.0, 7.0, 1.0]])
    assert top_k_unseen(scores, [np.array([0, 2])], 2).tolist() == [[1, 3]]


def test_served_top_10_is_the_evaluated_ranking_of_the_trained_module(recsys_package, manifest):
    module = MatrixFactorization(**manifest.provenance.source_kwargs)  # as the PyTorch backend rebuilds it
    assert manifest.provenance.source_kwargs == {"n_users": 2000, "n_items": 400, "factors": 8}
    load_model(module, str(recsys_package / manifest.provenance.weights_file))
    data = generate()
    users = np.array([0, 7, 1999, 42], dtype=np.int64)

    model = bushu.load(recsys_package)
    post = Postprocessor.for_package(manifest, recsys_package)
    post.check({"user": users})
    outputs = model.infer({"user": users})
    served = post(outputs, {"user": users})

    with torch.no_grad():
        trained = module.eval()(torch.from_numpy(users)).numpy()
    assert outputs["scores"].shape == (4, 400)
    assert relative_error(outputs["scores"], trained) < 1e-5
    expected = top_k_unseen(trained, [data.train[u] for u in users], 10)
    np.testing.assert_array_equal(served["items"], expected)
    for row, user in zip(served["items"], users):
        assert not set(row) & set(data.train[user])  # nothing already seen is recommended
    assert np.all(np.diff(served["item_scores"], axis=1) <= 0)


def test_an_unknown_user_id_is_a_clear_error(recsys_package, manifest):
    post = Postprocessor.for_package(manifest, recsys_package)
    with pytest.raises(InvalidInput, match=r"unknown user id 2000: this model knows users 0\.\.1999"):
        post.check({"user": np.array([5, 2000], dtype=np.int64)})
