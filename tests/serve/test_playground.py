"""The playground's routes over HTTP: the static page, its assets, the model list and the stats."""

import httpx
import pytest

from bushu.serve.auth import Token, digest
from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


@pytest.fixture(scope="module")
def server(vision_package, tiny_package, gpt2_package):
    with ThreadServer([vision_package, tiny_package, gpt2_package]) as running:
        yield running


def test_the_page_and_its_assets_are_served_by_bushu_with_a_strict_policy(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/playground/app.js" defer>' in page.text and "http" not in page.text.split("<body>")[0]
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = httpx.get(f"{server.url}/playground/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind) and len(r.content) > 500
    assert "https://" not in httpx.get(server.url + "/playground/app.js").text  # nothing fetched from elsewhere


@pytest.mark.parametrize("path", ["/playground/app.py", "/playground/..%2Fapp.py", "/playground/index.html"])
def test_only_the_listed_assets_are_served(server, path):
    r = httpx.get(server.url + path)
    assert r.status_code == 404


def test_models_are_listed_with_how_to_try_them(server):
    models = {m["name"]: m for m in httpx.get(server.url + "/v1/catalog").json()["models"]}
    assert models["digits-cnn"]["kind"] == "image" and models["digits-cnn"]["labels"] == [str(d) for d in range(10)]
    assert "integrated gradients" in models["digits-cnn"]["explain"]
    assert models["tiny"]["kind"] == "tensors" and models["tiny"]["explain"] is None
    assert models["tiny-gpt2"]["kind"] == "generation"


def test_stats_count_requests_in_a_cumulative_histogram(server, tiny_package):
    before = httpx.get(server.url + "/v1/stats").json()
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [0.0] * 6}]}
    for _ in range(5):
        assert httpx.post(server.url + "/v2/models/tiny/infer", json=body).status_code == 200
    after = httpx.get(server.url + "/v1/stats").json()
    assert after["count"] - before["count"] == 5 and after["time"] > before["time"]
    counts = [count for _, count in after["buckets"]]
    assert counts == sorted(counts) and counts[-1] == after["count"] and after["buckets"][-1][0] is None


def test_with_tokens_the_page_is_public_but_its_data_is_not(tiny_package):
    settings = ServeSettings(tokens=(Token("reader", digest("s3cret"), frozenset({"infer"})),))
    with ThreadServer([tiny_package], settings) as server:
        assert httpx.get(server.url + "/").status_code == 200
        assert httpx.get(server.url + "/playground/app.js").status_code == 200
        assert httpx.get(server.url + "/v1/catalog").status_code == 401
        assert httpx.get(server.url + "/v1/stats").status_code == 401
        listed = httpx.get(server.url + "/v1/catalog", headers={"Authorization": "Bearer s3cret"})
        assert listed.status_code == 200 and listed.json()["models"][0]["name"] == "tiny"
