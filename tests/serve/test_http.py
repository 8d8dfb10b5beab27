"""Bad input over real HTTP: a clear status and message, never a 500, never a dead server."""

import json

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(repository):
    with ThreadServer([repository], ServeSettings(max_body_bytes=LIMIT)) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def infer_body(data, shape=(1, 6), datatype="FP32", name="x"):
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": data}]}


def test_good_request(http):
    r = http.post("/v2/models/tiny/infer", json=infer_body([0.1] * 6))
    assert r.status_code == 200
    assert r.json()["outputs"][0]["shape"] == [1, 3]


@pytest.mark.parametrize(
    "path, payload, status, message",
    [
        ("/v2/models/tiny/infer", b"{oops", 400, "not valid JSON"),
        ("/v2/models/tiny/infer", infer_body([0.1] * 6, name="y"), 400, "missing input"),
        ("/v2/models/tiny/infer", infer_body([0.1] * 5, shape=(1, 5)), 400, "expected shape"),
        ("/v2/models/tiny/infer", infer_body([1] * 6, datatype="INT64"), 400, "expected datatype FP32, got INT64"),
        ("/v2/models/tiny/infer", infer_body([0.1] * 5), 400, "do not fill shape"),
        ("/v2/models/tiny/infer", infer_body([0.1] * 5 + [None]), 400, "only numbers do; found null"),
        ("/v2/models/tiny/infer", infer_body([0.1] * 5 + [1e39]), 400, "does not hold FP32 values"),
        ("/v2/models/tiny/infer", {**infer_body([0.1] * 6), "outputs": [{"name": "nope"}]}, 400, "unknown output"),
        ("/v2/models/nope/infer", infer_body([0.1] * 6), 404, "not loaded"),
        ("/v2/models/tiny/versions/9/infer", infer_body([0.1] * 6), 404, "version '9'"),
        ("/v2/models/nope", None, 404, "not loaded"),
        ("/v2/nothing/here", None, 404, "Not Found"),
    ],
)
def test_bad_requests_get_status_and_message(http, path, payload, status, message):
    if payload is None:
        r = http.get(path)
    else:
        content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        r = http.post(path, content=content)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_wrong_binary_header_length(http):
    r = http.post("/v2/models/tiny/infer", content=b'{"inputs": []}',
                  headers={"Inference-Header-Content-Length": "5000"})
    assert r.status_code == 400 and "does not fit" in r.json()["error"]


def test_oversized_body_is_413_declared_or_streamed(http):
    big = orjson.dumps(infer_body([0.1] * 20000, shape=(1, 20000)))
    assert len(big) > LIMIT
    r = http.post("/v2/models/tiny/infer", content=big)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = http.post("/v2/models/tiny/infer", content=chunks())
    assert r.status_code == 413
    assert http.get("/v2/health/live").status_code == 200


def test_wrong_method_is_405(http):
    assert http.get("/v2/models/tiny/infer").status_code == 405


def test_metrics_count_outcomes(http):
    http.post("/v2/models/tiny/infer", json=infer_body([0.1] * 6))
    http.post("/v2/models/tiny/infer", json=infer_body([0.1] * 5, shape=(1, 5)))
    text = http.get("/metrics").text
    assert 'bushu_requests_total{model="tiny",outcome="ok",version="2"}' in text
    assert 'bushu_requests_total{model="tiny",outcome="client_error",version="2"}' in text
    assert "bushu_batch_size_bucket" in text and "bushu_queue_depth" in text


def test_openapi_document_lists_the_routes(http):
    doc = http.get("/v2/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/v2/models/{model}/infer" in doc["paths"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y", ""]) | st.text(max_size=3),
        "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "BF16", "FP16", "nope"]),
        "shape": st.lists(st.integers(-2, 8), max_size=3) | json_values,
        "data": st.lists(st.floats(allow_nan=True) | st.integers() | st.text(max_size=3), max_size=12) | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 40) | json_values}),
    },
)
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3) | json_values},
    optional={"outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)})) | json_values,
              "id": json_values, "parameters": json_values},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=requests, binary=st.binary(max_size=48), header=st.none() | st.integers(-5, 400).map(str))
def test_fuzzed_infer_requests_never_get_a_500(http, doc, binary, header):
    content = json.dumps(doc).encode() + (binary if header else b"")  # stdlib: big ints, NaN
    headers = {"Inference-Header-Content-Length": header} if header else {}
    r = http.post("/v2/models/tiny/infer", content=content, headers=headers)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert isinstance(r.json()["error"], str)


def test_server_still_answers_after_the_fuzzing(http):
    r = http.post("/v2/models/tiny/infer", json=infer_body(np.ones(6).tolist()))
    assert r.status_code == 200


def test_the_fast_infer_route_answers_exactly_as_the_starlette_route(repository, server, http):
    """The raw-ASGI infer path (the default) against its Starlette twin: same status, headers, bytes."""
    from bushu.serve.access_log import AccessLog
    from bushu.serve.fast_infer import FastInfer

    assert [m.cls for m in server.app.user_middleware] == [AccessLog, FastInfer]
    x = np.arange(12, dtype=np.float32).reshape(2, 6) / 10
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 6],
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "outputs": [{"name": "output", "parameters": {"binary_data": True}}]})
    requests = [
        ("/v2/models/tiny/infer", orjson.dumps(infer_body([0.1] * 6)), {}),
        ("/v2/models/tiny/versions/1/infer", orjson.dumps(infer_body([0.2] * 6)), {}),
        ("/v2/models/tiny/infer", header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}),
        ("/v2/models/tiny/infer", b"{oops", {}),
        ("/v2/models/tiny/infer", orjson.dumps(infer_body([0.1] * 5)), {}),
        ("/v2/models/tiny/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}),
        ("/v2/models/nope/infer", orjson.dumps(infer_body([0.1] * 6)), {}),
        ("/v2/models/tiny/infer", b"[" * (LIMIT + 1), {}),
        ("/v2/models/tiny/infer/", orjson.dumps(infer_body([0.1] * 6)), {}),
    ]
    with ThreadServer([repository], ServeSettings(max_body_bytes=LIMIT), fast_infer=False) as plain, \
            httpx.Client(base_url=plain.url, timeout=10) as starlette:
        assert [m.cls for m in plain.app.user_middleware] == [AccessLog]
        for path, body, headers in requests:
            fast, slow = http.post(path, content=body, headers=headers), starlette.post(path, content=body, headers=headers)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), path
            for name in ("content-type", "content-length", "inference-header-content-length"):
                assert fast.headers.get(name) == slow.headers.get(name), (path, name)


def test_no_answer_goes_without_a_body(tiny_package):
    """Finding 11: every status bushu answers with carries a body. A client that disconnects
    mid-body on a Starlette route used to be answered a bare 400 with no body at all."""
    import asyncio

    from bushu.serve.app import create_app

    app = create_app([tiny_package])

    async def call(path):
        sent = []
        messages = iter([{"type": "http.request", "body": b'{"inp', "more_body": True}, {"type": "http.disconnect"}])

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80)}
        await app(scope, receive, send)
        return sent

    for path in ["/v1/models/tiny/predict", "/v1/models/tiny/search", "/v2/models/tiny/infer"]:
        sent = asyncio.run(call(path))
        starts = [m for m in sent if m["type"] == "http.response.start"]
        bodies = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        assert not starts or bodies, f"{path}: answered {starts[0]['status']} with an empty body"
