"""`POST /v1/models/{m}/explain` over HTTP: the served answer with its explanation, and the errors."""

import asyncio
import base64

import httpx
import pytest

from bushu.apps.vision.data import load_digits_split
from bushu.serve.settings import ServeSettings
from fixtures.explain import png
from fixtures.servers import ThreadServer

pytest.importorskip("captum")


@pytest.fixture(scope="module")
def server(vision_package, recsys_package, tiny_package):
    settings = ServeSettings(explain_concurrency=1, explain_waiting=1)
    with ThreadServer([vision_package, recsys_package, tiny_package], settings) as running:
        yield running


@pytest.fixture(scope="module")
def digit():
    split = load_digits_split()
    return png(split.test_images[0]), str(split.test_labels[0])


def test_a_png_is_explained_next_to_its_served_answer(server, digit):
    image, truth = digit
    r = httpx.post(server.url + "/v1/models/digits-cnn/explain?method=saliency", content=image,
                   headers={"Content-Type": "image/png"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prediction"]["label"] == truth and body["source_label"] == truth and body["agrees"]
    assert body["method"] == "saliency" and len(body["attributions"]) == 32 and len(body["attributions"][0]) == 32
    assert base64.b64decode(body["overlay_png"]).startswith(b"\x89PNG")
    assert body["explain_ms"] > 0


def test_json_options_and_a_batch(server, digit):
    image, truth = digit
    doc = {"users": [1, 2], "k": 3, "steps": 8}
    r = httpx.post(server.url + "/v1/models/recsys-mf/explain", json=doc, timeout=120)
    assert r.status_code == 200, r.text
    explanations = r.json()["explanations"]
    assert [e["user"] for e in explanations] == [1, 2]
    assert all(len(e["items"]) == 3 and e["prediction"]["items"][0]["item"] == e["items"][0]["item"] for e in explanations)


@pytest.mark.parametrize("path, doc, status, message", [
    ("digits-cnn", {"image": "aGk=", "method": "lime"}, 400, "'method' must be one of"),
    ("digits-cnn", {"image": "aGk=", "steps": 100000}, 400, "'steps' must be an integer"),
    ("digits-cnn", {"picture": 1}, 400, "expected one of"),
    ("recsys-mf", {"users": list(range(9))}, 400, "at most 8"),
    ("recsys-mf", {"user": 10**6}, 400, "unknown user id"),
    ("tiny", {"text": "hi"}, 400, "declares no natural input"),
    ("nope", {"text": "hi"}, 404, "not loaded"),
])
def test_bad_requests_get_clear_errors(server, path, doc, status, message):
    r = httpx.post(f"{server.url}/v1/models/{path}/explain", json=doc, timeout=60)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_an_unknown_target_label_is_a_400(server, digit):
    r = httpx.post(server.url + "/v1/models/digits-cnn/explain",
                   json={"image": base64.b64encode(digit[0]).decode(), "target": "cat", "method": "saliency"}, timeout=60)
    assert r.status_code == 400 and "not one of the model's labels" in r.json()["error"]


def test_explanations_past_their_queue_get_503_with_retry_after_and_infer_is_not_held_up(server, digit):
    """One explanation runs and one waits (the settings above); the rest are refused at once,
    and a prediction sent meanwhile is answered while an accepted explanation is still running."""
    image = base64.b64encode(digit[0]).decode()

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
            slow = {"image": image, "steps": 512}
            explains = [asyncio.create_task(client.post("/v1/models/digits-cnn/explain", json=slow)) for _ in range(4)]
            while not any(t.done() for t in explains):  # the first refusal: all four have arrived
                await asyncio.sleep(0.01)
            predicted = await client.post("/v1/models/digits-cnn/predict", json={"image": image})
            pending_then = [not t.done() for t in explains]
            return predicted, pending_then, await asyncio.gather(*explains)

    predicted, pending_then, responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [200, 200, 503, 503], statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert int(refused.headers["retry-after"]) >= 1 and "try again" in refused.json()["error"]
    assert predicted.status_code == 200 and predicted.json()["label"] == digit[1]
    assert any(pending and status == 200 for pending, status in zip(pending_then, statuses))
