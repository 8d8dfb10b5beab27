"""The vision app over its natural route: PNG bytes in, label and probabilities out, over HTTP."""

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from bushu.apps.vision.data import load_digits_split
from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(vision_package):
    with ThreadServer([vision_package], ServeSettings(max_batch_size=64, max_queue_delay_ms=5)) as running:
        yield running


def test_held_out_pngs_come_back_with_the_right_label(server):
    split = load_digits_split()

    async def run_all():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            sem = asyncio.Semaphore(32)

            async def one(image):
                async with sem:
                    return await client.post("/v1/models/digits-cnn/predict", content=png(image),
                                             headers={"Content-Type": "image/png"})

            return await asyncio.gather(*(one(img) for img in split.test_images))

    responses = asyncio.run(run_all())
    assert all(r.status_code == 200 for r in responses)
    labels = [r.json()["label"] for r in responses]
    accuracy = np.mean([label == str(truth) for label, truth in zip(labels, split.test_labels)])
    assert accuracy >= 0.97
    first = responses[0].json()
    assert set(first["probabilities"]) == {str(d) for d in range(10)}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-6
    assert [t["label"] for t in first["top_k"]][0] == first["label"] and len(first["top_k"]) == 3


def test_base64_json_and_k(server):
    image = load_digits_split().test_images[0]
    r = httpx.post(server.url + "/v1/models/digits-cnn/predict",
                   json={"image": base64.b64encode(png(image)).decode(), "k": 5})
    assert r.status_code == 200 and len(r.json()["top_k"]) == 5


@pytest.mark.parametrize(
    "content, headers, message",
    [
        (b"not an image", {"Content-Type": "image/png"}, "could not decode the image"),
        (b"", {"Content-Type": "image/png"}, "body is empty"),
        (b'{"image": "***"}', {"Content-Type": "application/json"}, "base64"),
        (b'{"picture": 1}', {"Content-Type": "application/json"}, "expected one of"),
        (b'{"image": "aGk=", "k": 0}', {"Content-Type": "application/json"}, "positive integer"),
        (b"[1]", {"Content-Type": "application/json"}, "JSON object"),
    ],
)
def test_undecodable_inputs_get_400(server, content, headers, message):
    r = httpx.post(server.url + "/v1/models/digits-cnn/predict", content=content, headers=headers)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_a_model_without_preprocessing_says_to_use_v2(tiny_package):
    with ThreadServer([tiny_package]) as server:
        r = httpx.post(server.url + "/v1/models/tiny/predict", json={"text": "hi"})
    assert r.status_code == 400 and "V2 infer route" in r.json()["error"]


@pytest.fixture(scope="module")
def apps_server(text_package, recsys_package):
    with ThreadServer([text_package, recsys_package]) as running:
        yield running


def test_texts_in_labels_and_probabilities_out(apps_server, text_package):
    import bushu
    from bushu.package import read_manifest
    from bushu.runtime.text import Tokenizer

    manifest = read_manifest(text_package)
    texts = ["I love this, it is wonderful!", "worst service ever, I am so angry", "the meeting is at noon"]
    r = httpx.post(apps_server.url + f"/v1/models/{manifest.name}/predict", json={"texts": texts})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 3 and all(p["label"] in manifest.labels for p in predictions)
    ids = Tokenizer.from_manifest(manifest, text_package).encode_batch(texts)
    logits = bushu.load(text_package).infer({"ids": ids})["logits"]
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = np.array([[p["probabilities"][label] for label in manifest.labels] for p in predictions])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    r = httpx.post(apps_server.url + f"/v1/models/{manifest.name}/predict", json={"text": "   "})
    assert r.status_code == 400 and "no tokens" in r.json()["error"]


def test_a_user_id_in_unseen_items_out(apps_server, recsys_package):
    from bushu.package import read_manifest
    from bushu.runtime.postprocessing import read_seen

    manifest = read_manifest(recsys_package)
    step = manifest.postprocessing[0].params
    r = httpx.post(apps_server.url + f"/v1/models/{manifest.name}/predict", json={"user": 7, "k": 5})
    assert r.status_code == 200, r.text
    items = [entry["item"] for entry in r.json()["items"]]
    scores = [entry["score"] for entry in r.json()["items"]]
    indptr, indices = read_seen((recsys_package / step["seen"]).read_bytes(), step["seen"])
    assert len(items) == 5 and scores == sorted(scores, reverse=True)
    assert not set(items) & set(indices[indptr[7] : indptr[8]].tolist())
    r = httpx.post(apps_server.url + f"/v1/models/{manifest.name}/predict", json={"user": step["n_users"]})
    assert r.status_code == 400 and "unknown user id" in r.json()["error"]
    r = httpx.post(apps_server.url + f"/v1/models/{manifest.name}/predict", json={"user": "seven"})
    assert r.status_code == 400 and "integers" in r.json()["error"]


def test_embeddings_and_search_over_a_posted_corpus(minilm_package):
    import bushu
    from bushu.package import read_manifest
    from bushu.runtime import hf_text

    corpus = ["The cat sat on the mat.", "Stock markets fell sharply today.", "A kitten is sleeping on a rug.",
              "The recipe needs two eggs and flour."]
    # two rows per request: the query and corpus are embedded in three requests, not refused
    with ThreadServer([minilm_package], ServeSettings(max_batch_size=2, max_corpus=4)) as server:
        r = httpx.post(server.url + "/v1/models/minilm/predict", json={"texts": corpus[:2]}, timeout=60)
        found = httpx.post(server.url + "/v1/models/minilm/search",
                           json={"query": "a small cat resting", "corpus": corpus, "k": 2}, timeout=60)
        bad = httpx.post(server.url + "/v1/models/minilm/search", json={"query": "x", "corpus": []})
        too_many = httpx.post(server.url + "/v1/models/minilm/search", json={"query": "x", "corpus": corpus + ["y"]})
        ids = httpx.post(server.url + "/v2/models/minilm/infer", json={"inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [1, 3], "data": [101, 10**6, 102]},
            {"name": "attention_mask", "datatype": "INT64", "shape": [1, 3], "data": [1, 1, 1]}]})
    assert r.status_code == 200
    got = np.array([p["embedding"] for p in r.json()["predictions"]])
    manifest = read_manifest(minilm_package)
    step = next(s for s in manifest.preprocessing if s.kind == hf_text.STEP_KIND)
    want = bushu.load(minilm_package).infer(hf_text.tokenize(corpus[:2], step, minilm_package), ["embedding"])["embedding"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-4)
    assert found.status_code == 200, found.text
    assert {h["index"] for h in found.json()["results"]} == {0, 2}  # the two cat sentences
    assert bad.status_code == 400 and "corpus" in bad.json()["error"]
    assert too_many.status_code == 413
    assert too_many.json()["error"] == "the corpus has 5 texts; this server searches at most 4"
    vocab = manifest.inputs[0].range[1]
    assert ids.status_code == 400
    assert ids.json()["error"] == f"input 'input_ids': value 1000000 is outside its range [0, {vocab})"
