"""The dynamic batcher over real HTTP: batches form, rows go back to the right request,
shapes that differ are not mixed, a full queue answers 503 and a late request 504."""

import asyncio
import re

import httpx
import numpy as np
import onnxruntime as ort

from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


def v2(name, array, datatype):
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}]}


async def post_all(url, path, bodies):
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=b) for b in bodies))


def metric(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for found, value in re.findall(name + r"\{([^}]*)\} (\S+)", text):
        have = dict(re.findall(r'(\w+)="([^"]*)"', found))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def test_concurrent_requests_batch_and_each_gets_its_own_rows(tiny_package, rng):
    session = ort.InferenceSession(str(tiny_package / "model.onnx"))
    xs = [rng.standard_normal((1 + i % 3, 6)).astype(np.float32) for i in range(24)]
    settings = ServeSettings(max_batch_size=16, max_queue_delay_ms=100)
    with ThreadServer([tiny_package], settings) as server:
        responses = asyncio.run(post_all(server.url, "/v2/models/tiny/infer", [v2("x", x, "FP32") for x in xs]))
        text = httpx.get(server.url + "/metrics").text
    for x, r in zip(xs, responses):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [len(x), 3]
        np.testing.assert_allclose(np.array(out["data"]).reshape(len(x), 3), session.run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-6)
    batches = metric(text, "bushu_batch_size_count", model="tiny")
    rows = metric(text, "bushu_batch_size_sum", model="tiny")
    assert rows == sum(len(x) for x in xs)
    assert batches < len(xs)  # requests shared batches
    assert metric(text, "bushu_batch_size_bucket", model="tiny", le="16.0") == batches  # none over the max


def test_different_sequence_lengths_are_grouped_not_mixed(gru_package, rng):
    session = ort.InferenceSession(str(gru_package / "model.onnx"))
    ids = [rng.integers(0, 20, (2, length)).astype(np.int64) for length in (3, 5, 3, 7, 5, 3, 9, 7)]
    with ThreadServer([gru_package], ServeSettings(max_batch_size=32, max_queue_delay_ms=50)) as server:
        responses = asyncio.run(post_all(server.url, "/v2/models/gru/infer", [v2("ids", i, "INT64") for i in ids]))
    for i, r in zip(ids, responses):
        assert r.status_code == 200, r.text
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
        np.testing.assert_allclose(got, session.run(None, {"ids": i})[0], rtol=1e-5, atol=1e-6)


def test_a_full_queue_answers_503_with_retry_after_and_keeps_serving(slow_package):
    x = np.ones((1, 1024), np.float32)
    settings = ServeSettings(max_batch_size=1, max_queue_size=2, threads=1)
    with ThreadServer([slow_package], settings) as server:
        responses = asyncio.run(post_all(server.url, "/v2/models/slow/infer", [v2("x", x, "FP32")] * 24))
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {200, 503}, statuses
        refused = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" and "queue" in r.json()["error"] for r in refused)
        after = httpx.post(server.url + "/v2/models/slow/infer", json=v2("x", x, "FP32"), timeout=30)
        assert after.status_code == 200
        text = httpx.get(server.url + "/metrics").text
    assert metric(text, "bushu_requests_total", outcome="overloaded") == len(refused)


def test_requests_past_their_deadline_get_504(slow_package):
    x = np.ones((1, 1024), np.float32)
    settings = ServeSettings(max_batch_size=1, timeout_s=0.02, threads=1)
    with ThreadServer([slow_package], settings) as server:
        responses = asyncio.run(post_all(server.url, "/v2/models/slow/infer", [v2("x", x, "FP32")] * 12))
    statuses = [r.status_code for r in responses]
    assert 504 in statuses and set(statuses) <= {200, 504}, statuses
    assert all("deadline" in r.json()["error"] or "within" in r.json()["error"] for r in responses if r.status_code == 504)


def test_several_instances_serve_correctly(tiny_package, rng):
    session = ort.InferenceSession(str(tiny_package / "model.onnx"))
    xs = [rng.standard_normal((2, 6)).astype(np.float32) for _ in range(16)]
    with ThreadServer([tiny_package], ServeSettings(instances=3, max_batch_size=4)) as server:
        responses = asyncio.run(post_all(server.url, "/v2/models/tiny/infer", [v2("x", x, "FP32") for x in xs]))
    for x, r in zip(xs, responses):
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
        np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
