import io

import numpy as np
import pytest

from bushu.errors import InvalidInput, PackageError
from bushu.package.manifest import Step
from bushu.runtime.postprocessing import Postprocessor, check_ids


def test_softmax_then_top_k_gives_labels_and_probabilities():
    post = Postprocessor([Step(kind="softmax", params={"output": "logits"}), Step(kind="top_k", params={"k": 2})],
                         labels=["neg", "neu", "pos"])
    logits = np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    result = post({"logits": logits}, {})
    np.testing.assert_allclose(result["probabilities"].sum(1), 1.0, rtol=1e-6)
    assert result["labels"].tolist() == [["pos", "neu"], ["neg", "neu"]]
    assert result["scores"][0, 0] == pytest.approx(np.exp(3) / (1 + np.exp(1) + np.exp(3)), rel=1e-6)


@pytest.fixture
def seen_package(tmp_path):
    """Three users who saw items {0, 1}, {}, {2} of five."""
    buffer = io.BytesIO()
    np.savez(buffer, indptr=np.array([0, 2, 2, 3]), indices=np.array([0, 1, 2]))
    (tmp_path / "recsys").mkdir()
    (tmp_path / "recsys" / "seen.npz").write_bytes(buffer.getvalue())
    step = Step(kind="top_k_unseen", params={"k": 2, "scores": "scores", "input": "user",
                                             "seen": "recsys/seen.npz", "n_users": 3})
    return tmp_path, step


def test_top_k_unseen_skips_each_users_seen_items(seen_package):
    root, step = seen_package
    post = Postprocessor([step], root=root)
    scores = np.tile(np.array([5, 4, 3, 2, 1], dtype=np.float32), (3, 1))
    result = post({"scores": scores}, {"user": np.array([0, 1, 2])})
    assert result["items"].tolist() == [[2, 3], [0, 1], [0, 1]]
    assert result["item_scores"].tolist() == [[3, 2], [5, 4], [5, 4]]


@pytest.mark.parametrize("user", [3, -1, 1000])
def test_an_unknown_user_is_refused_with_the_valid_range(seen_package, user):
    root, step = seen_package
    post = Postprocessor([step], root=root)
    with pytest.raises(InvalidInput, match=rf"unknown user id {user}: this model knows users 0\.\.2"):
        post.check({"user": np.array([0, user])})
    with pytest.raises(InvalidInput, match="unknown user id"):
        post({"scores": np.zeros((2, 5), np.float32)}, {"user": np.array([0, user])})


def test_ids_must_be_integers():
    with pytest.raises(InvalidInput, match="must be integers"):
        check_ids(np.array([0.5]), 3)


def test_a_seen_file_that_disagrees_with_the_step_is_a_package_error(seen_package):
    root, step = seen_package
    wrong = Step(kind="top_k_unseen", params={**step.params, "n_users": 4})
    with pytest.raises(PackageError, match="3 users, the step says 4"):
        Postprocessor([wrong], root=root)
    with pytest.raises(PackageError, match="unknown post-processing step"):
        Postprocessor([Step(kind="nope")])
