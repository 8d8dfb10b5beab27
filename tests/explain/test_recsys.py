"""Factor contributions for the recommender: exact, and about the items actually served."""

import numpy as np
import pytest
import torch

import bushu
from bushu.explain import ExplainOptions, explainer_for
from bushu.package.store import read_manifest
from bushu.serve.predict import NaturalRequest, Predictor
from fixtures.explain import reference_module


@pytest.fixture(scope="module")
def served(recsys_package):
    """What the served (ONNX) variant answers for three users."""
    manifest = read_manifest(recsys_package)
    predictor = Predictor(manifest, recsys_package)
    request = NaturalRequest([0, 42, 1999], batched=True, k=4)
    inputs = predictor.tensors(request)
    return request, predictor.answers(bushu.load(recsys_package).infer(inputs), inputs, 4)


def test_contributions_plus_bias_are_the_source_score(recsys_package, served):
    request, answers = served
    explained = explainer_for(recsys_package, read_manifest(recsys_package)).explain(request, answers, ExplainOptions())
    module = reference_module(recsys_package)
    for user, answer, explanation in zip(request.items, answers, explained):
        assert explanation["agrees"] and explanation["source_items"] == [i["item"] for i in answer["items"]]
        with torch.no_grad():
            scores = module(torch.tensor([user]))[0].numpy()
        for item, served_item in zip(explanation["items"], answer["items"]):
            assert item["item"] == served_item["item"]
            assert sum(item["factors"]) + item["bias"] == pytest.approx(scores[item["item"]], abs=1e-4)
            assert abs(item["convergence_delta"]) < 1e-4
            assert len(item["factors"]) == module.users.embedding_dim
            # each factor's share is the product of the user's and the item's factor
            want = module.users.weight[user] * module.items.weight[item["item"]]
            assert np.allclose(item["factors"], want.detach().numpy(), atol=1e-5)


def test_similar_seen_items_are_from_the_users_history(recsys_package, served):
    from bushu.runtime.postprocessing import read_seen

    request, answers = served
    explained = explainer_for(recsys_package, read_manifest(recsys_package)).explain(request, answers, ExplainOptions())
    params = next(s.params for s in read_manifest(recsys_package).postprocessing if s.kind == "top_k_unseen")
    indptr, indices = read_seen((recsys_package / params["seen"]).read_bytes(), params["seen"])
    for user, explanation in zip(request.items, explained):
        history = set(indices[indptr[user] : indptr[user + 1]].tolist())
        for item in explanation["items"]:
            assert item["similar_seen"] and {s["item"] for s in item["similar_seen"]} <= history
            assert item["item"] not in history
