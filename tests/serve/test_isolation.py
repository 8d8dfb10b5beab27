"""One client can never fail another's request: bad ids are refused before they join a batch,
a model error reaches only the request that caused it, and the batch collector survives."""

import asyncio

import httpx
import numpy as np
import pytest

import bushu
from bushu.errors import BushuError
from bushu.package import read_manifest
from bushu.serve.batcher import BatchObserver, Batcher
from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer

#: Long enough a window that sixteen concurrent requests share batches.
BATCHING = ServeSettings(max_batch_size=16, max_queue_delay_ms=50)


def v2(name, array):
    return {"inputs": [{"name": name, "datatype": "INT64", "shape": list(array.shape), "data": array.ravel().tolist()}]}


async def post_all(url, requests):
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=body) for path, body in requests))


def one_bad_among_sixteen(url, path, good, bad, bad_at=5):
    bodies = [*good[:bad_at], bad, *good[bad_at:]]
    responses = asyncio.run(post_all(url, [(path, body) for body in bodies]))
    return responses.pop(bad_at), responses


@pytest.fixture(scope="module")
def apps_server(text_package, recsys_package):
    with ThreadServer([text_package, recsys_package], BATCHING) as running:
        yield running


@pytest.mark.parametrize("bad_user", [99999, 2000, -1])
def test_an_unknown_user_id_fails_alone_on_the_v2_route(apps_server, recsys_package, bad_user):
    model = bushu.load(recsys_package)
    users = [np.array([u], np.int64) for u in (3, 17, 256, 1999, 0, 42, 7, 1000, 5, 6, 8, 9, 10, 11, 12)]
    bad, good = one_bad_among_sixteen(apps_server.url, "/v2/models/recsys-mf/infer",
                                      [v2("user", u) for u in users], v2("user", np.array([bad_user])))
    assert bad.status_code == 400, bad.text  # never 500 for everyone, never a wrapped-around answer
    assert bad.json()["error"] == f"input 'user': value {bad_user} is outside its range [0, 2000)"
    assert [r.status_code for r in good] == [200] * 15
    for user, response in zip(users, good):
        got = np.array(response.json()["outputs"][0]["data"], np.float32)
        np.testing.assert_allclose(got, model.infer({"user": user})["scores"].ravel(), rtol=1e-5, atol=1e-6)


def test_an_unknown_user_id_fails_alone_on_the_app_route(apps_server, recsys_package):
    model = bushu.load(recsys_package)
    users = list(range(100, 115))
    bad, good = one_bad_among_sixteen(apps_server.url, "/v1/models/recsys-mf/predict",
                                      [{"user": u, "k": 3} for u in users], {"user": -1, "k": 3})
    assert bad.status_code == 400 and "unknown user id -1" in bad.json()["error"]
    assert "input 'user'" in bad.json()["error"] and "range [0, 2000)" in bad.json()["error"]
    assert [r.status_code for r in good] == [200] * 15
    for user, response in zip(users, good):  # each answer is its own user's best unseen items
        scores = model.infer({"user": np.array([user])})["scores"][0]
        best = [entry["item"] for entry in response.json()["items"]]
        np.testing.assert_allclose([entry["score"] for entry in response.json()["items"]], scores[best], rtol=1e-5)


@pytest.mark.parametrize("where", ["past the vocabulary", "negative"])
def test_a_token_id_out_of_the_vocabulary_fails_alone(apps_server, text_package, where):
    manifest = read_manifest(text_package)
    vocab = manifest.inputs[0].range[1]
    assert manifest.inputs[0].range == (0, vocab) and vocab > 100
    model = bushu.load(text_package)
    rng = np.random.default_rng(3)
    sentences = [rng.integers(2, vocab, (1, 9)) for _ in range(15)]
    wrong = vocab + 7 if where == "past the vocabulary" else -3
    bad_ids = sentences[0].copy()
    bad_ids[0, 4] = wrong
    bad, good = one_bad_among_sixteen(apps_server.url, f"/v2/models/{manifest.name}/infer",
                                      [v2("ids", s) for s in sentences], v2("ids", bad_ids))
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"] == f"input 'ids': value {wrong} is outside its range [0, {vocab})"
    assert [r.status_code for r in good] == [200] * 15
    for ids, response in zip(sentences, good):
        got = np.array(response.json()["outputs"][0]["data"], np.float32)
        np.testing.assert_allclose(got, model.infer({"ids": ids})["logits"].ravel(), rtol=1e-4, atol=1e-5)


def test_a_bad_text_fails_alone_on_the_app_route(apps_server, text_package):
    """Texts always tokenize into the vocabulary; what a client can get wrong there is the text."""
    name = read_manifest(text_package).name
    texts = [f"review number {i}: the food was {'great' if i % 2 else 'awful'}" for i in range(15)]
    bad, good = one_bad_among_sixteen(apps_server.url, f"/v1/models/{name}/predict",
                                      [{"text": t} for t in texts], {"text": "  "})
    assert bad.status_code == 400 and "no tokens" in bad.json()["error"]
    assert [r.status_code for r in good] == [200] * 15


def test_a_model_error_in_a_batch_fails_only_the_request_that_caused_it(gru_package, caplog):
    """The gru package declares no range, so an id past its 20-row embedding reaches ONNX
    Runtime, which fails the whole batched call: the batch is re-run one request at a time, and
    only the culprit hears the model's refusal (ONNX Runtime's INVALID_ARGUMENT is the input's
    fault: 400, naming what the model said)."""
    model = bushu.load(gru_package)
    assert model.manifest.inputs[0].range is None
    rng = np.random.default_rng(4)
    sentences = [rng.integers(0, 20, (1, 6)) for _ in range(15)]
    with pytest.raises(Exception, match="(?i)indices|out of"):  # the model really fails on it
        model.infer({"ids": np.array([[1, 2, 50, 3, 4, 5]])})
    with ThreadServer([gru_package], BATCHING) as server:
        bad, good = one_bad_among_sixteen(server.url, "/v2/models/gru/infer", [v2("ids", s) for s in sentences],
                                          v2("ids", np.array([[1, 2, 50, 3, 4, 5]])))
    assert bad.status_code == 400 and "the model refused the input" in bad.json()["error"]
    assert "indices element out of data bounds" in bad.json()["error"]
    assert [r.status_code for r in good] == [200] * 15
    for ids, response in zip(sentences, good):
        got = np.array(response.json()["outputs"][0]["data"], np.float32)
        want = next(iter(model.infer({"ids": ids}).values()))
        np.testing.assert_allclose(got, want.ravel(), rtol=1e-4, atol=1e-5)
    # it did share a batch with others, which failed as a whole and was re-run one by one
    assert any("running them one by one" in r.getMessage() for r in caplog.records)


def test_the_batch_collector_is_restarted_after_an_exception(tiny_package):
    """A failure injected into a real batcher's collector task: the requests it held hear a
    500, every later request is served (before, they all waited for their 504)."""

    async def scenario():
        failures = []
        batcher = None

        def depth(n):
            if asyncio.current_task() is batcher._task and not failures:
                failures.append(n)
                raise RuntimeError("injected collector failure")

        batcher = Batcher([bushu.load(tiny_package)], max_queue_delay=0.001, timeout=5,
                          observer=BatchObserver(depth=depth))
        x = np.ones((1, 6), np.float32)
        try:
            first = await asyncio.gather(batcher.infer({"x": x}), return_exceptions=True)
            later = await asyncio.wait_for(asyncio.gather(*(batcher.infer({"x": x}) for _ in range(4))), 3)
        finally:
            await batcher.close()
        return failures, first[0], later

    failures, first, later = asyncio.run(scenario())
    assert failures, "the injected failure never ran"
    assert isinstance(first, BushuError) and first.status == 500 and "injected collector failure" in str(first)
    assert len(later) == 4 and all(next(iter(r.values())).shape == (1, 3) for r in later)
