"""tritonclient's gRPC client, unchanged, drives bushu: health, metadata, configuration, infer
with the models' datatypes (answers equal to the HTTP route's), statistics, the repository,
errors with their gRPC codes, auth from metadata, and `bushu serve --grpc-port` end to end."""

import signal

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from bushu.serve.auth import Token, digest
from bushu.serve.settings import ServeSettings
from fixtures.servers import ProcessServer, ThreadServer


@pytest.fixture(scope="module")
def server(repository):
    with ThreadServer([repository], grpc=True) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    c = triton_grpc.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http_client(server):
    c = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    yield c
    c.close()


def grpc_input(name, array, datatype):
    tensor = triton_grpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def http_input(name, array, datatype, binary=True):
    tensor = triton_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def stats_of(report, version="1"):
    """tritonclient's gRPC statistics (a protobuf) or HTTP statistics (a dict), as one dict shape."""
    from google.protobuf import json_format

    if not isinstance(report, dict):
        report = json_format.MessageToDict(report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    (entry,) = [m for m in report["model_stats"] if m["version"] == version]
    stats = entry["inference_stats"]
    return {key: (int(stats[key]["count"]), int(stats[key]["ns"])) for key in ("success", "fail", "queue", "compute_infer")}


def test_health_and_metadata_match_http(client, http_client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "bushu" and "statistics" in meta.extensions and "model_configuration" in meta.extensions
    model = client.get_model_metadata("heads", as_json=True)
    want = http_client.get_model_metadata("heads")
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "6"]}]  # int64 as JSON strings
    assert [o["name"] for o in model["outputs"]] == [o["name"] for o in want["outputs"]] == ["logits", "probs"]
    assert model["platform"] == want["platform"] == "onnxruntime_onnx"
    assert client.get_model_metadata("tiny").versions == ["1", "2"]
    assert client.is_model_ready("tiny", "2") and not client.is_model_ready("tiny", "3")
    assert not client.is_model_ready("absent")


@pytest.mark.parametrize("rows", [1, 5])
def test_fp32_infer_equals_the_http_route_and_onnxruntime(client, http_client, two_heads_package, rows, rng):
    x = rng.standard_normal((rows, 6)).astype(np.float32)
    result = client.infer("heads", [grpc_input("x", x, "FP32")], request_id="g-1",
                          outputs=[triton_grpc.InferRequestedOutput("logits"), triton_grpc.InferRequestedOutput("probs")])
    over_http = http_client.infer("heads", [http_input("x", x, "FP32")])
    want = dict(zip(["logits", "probs"], ort.InferenceSession(str(two_heads_package / "model.onnx")).run(None, {"x": x})))
    for name in ("logits", "probs"):
        np.testing.assert_array_equal(result.as_numpy(name), over_http.as_numpy(name))
        np.testing.assert_allclose(result.as_numpy(name), want[name], rtol=1e-6, atol=1e-6)
    response = result.get_response()
    assert response.id == "g-1" and response.model_name == "heads" and response.model_version == "1"
    assert [o.datatype for o in response.outputs] == ["FP32", "FP32"]


def test_output_selection_and_version(client, rng):
    x = rng.standard_normal((2, 6)).astype(np.float32)
    result = client.infer("heads", [grpc_input("x", x, "FP32")], model_version="1",
                          outputs=[triton_grpc.InferRequestedOutput("probs")])
    assert [o.name for o in result.get_response().outputs] == ["probs"]
    assert result.as_numpy("logits") is None


def test_int64_infer_equals_the_http_route(client, http_client, gru_package, rng):
    ids = rng.integers(0, 20, (3, 9)).astype(np.int64)
    result = client.infer("gru", [grpc_input("ids", ids, "INT64")])
    over_http = http_client.infer("gru", [http_input("ids", ids, "INT64", binary=False)])
    np.testing.assert_array_equal(result.as_numpy("output"), over_http.as_numpy("output"))
    want = ort.InferenceSession(str(gru_package / "model.onnx")).run(None, {"ids": ids})[0]
    np.testing.assert_allclose(result.as_numpy("output"), want, rtol=1e-5, atol=1e-6)


def test_typed_contents_decode_like_raw_contents(server, client, rng):
    """Other V2 gRPC clients send typed `contents` instead of raw bytes: the same answer."""
    x = rng.standard_normal((2, 6)).astype(np.float32)
    raw = client.infer("heads", [grpc_input("x", x, "FP32")]).as_numpy("probs")
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="heads")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 6])
        tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
        response = stub.ModelInfer(request)
        assert [o.name for o in response.outputs] == ["logits", "probs"]
        probs = np.frombuffer(response.raw_output_contents[1], "<f4").reshape(2, 3)
        np.testing.assert_array_equal(probs, raw)

        big = service_pb2.ModelInferRequest(model_name="gru")
        ids = big.inputs.add(name="ids", datatype="INT8", shape=[1, 1])
        ids.contents.int_contents.append(300)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(big)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not fit INT8" in error.value.details()


def test_errors_carry_their_grpc_codes(server, client):
    bad = grpc_input("x", np.zeros((1, 5), np.float32), "FP32")
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 6\]") as error:
        client.infer("heads", [bad])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="is not loaded") as error:
        client.infer("absent", [bad])
    assert error.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="not loaded") as error:
        client.get_model_config("absent")
    assert error.value.status() == "StatusCode.NOT_FOUND"
    too_many = grpc_input("x", np.zeros((33, 6), np.float32), "FP32")  # more rows than --max-batch-size
    with pytest.raises(InferenceServerException, match="at most 32") as error:
        client.infer("heads", [too_many])
    assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    with grpc.insecure_channel(server.grpc_url) as channel:  # bytes that are no whole FP32 count
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="heads")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 6])
        request.raw_input_contents.append(b"\0" * 22)  # 5.5 FP32 values
        with pytest.raises(grpc.RpcError) as raw_error:
            stub.ModelInfer(request)
        assert raw_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a whole number of FP32 values" in raw_error.value.details()
        with pytest.raises(grpc.RpcError) as unimplemented:  # Triton's shared memory: not offered
            stub.SystemSharedMemoryStatus(service_pb2.SystemSharedMemoryStatusRequest())
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_model_config_in_tritons_fields_over_both_protocols(client, http_client):
    over_grpc = client.get_model_config("heads", as_json=True)["config"]
    over_http = http_client.get_model_config("heads")
    for config in (over_grpc, over_http):
        assert config["name"] == "heads" and config["platform"] == "onnxruntime_onnx"
        assert int(config["max_batch_size"]) == 32
        assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]] == [("x", "TYPE_FP32", [6])]
        assert [t["name"] for t in config["output"]] == ["logits", "probs"]
        assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 5000
    gru = http_client.get_model_config("gru")
    assert gru["input"] == [{"name": "ids", "data_type": "TYPE_INT64", "dims": [-1]}]


def test_statistics_count_both_protocols_alike(client, http_client, rng):
    before_grpc = stats_of(client.get_inference_statistics("heads"))
    before_http = stats_of(http_client.get_inference_statistics("heads"))
    assert before_grpc == before_http
    x = rng.standard_normal((1, 6)).astype(np.float32)
    for _ in range(3):
        client.infer("heads", [grpc_input("x", x, "FP32")])
    http_client.infer("heads", [http_input("x", x, "FP32")])
    with pytest.raises(InferenceServerException):
        client.infer("heads", [grpc_input("x", np.zeros((1, 5), np.float32), "FP32")])
    with pytest.raises(InferenceServerException):
        http_client.infer("heads", [http_input("x", np.zeros((1, 5), np.float32), "FP32")])
    after = stats_of(client.get_inference_statistics("heads", "1"))
    assert after == stats_of(http_client.get_inference_statistics("heads", "1"))
    assert after["success"][0] - before_grpc["success"][0] == 4
    assert after["fail"][0] - before_grpc["fail"][0] == 2
    assert after["queue"][0] - before_grpc["queue"][0] == 4 and after["queue"][1] > before_grpc["queue"][1]
    assert after["compute_infer"][0] - before_grpc["compute_infer"][0] == 4
    assert after["compute_infer"][1] > before_grpc["compute_infer"][1]
    assert after["success"][1] - before_grpc["success"][1] >= after["compute_infer"][1] - before_grpc["compute_infer"][1]
    every = http_client.get_inference_statistics()["model_stats"]
    assert {(m["name"], m["version"]) for m in every} == {("heads", "1"), ("gru", "1"), ("tiny", "1"), ("tiny", "2")}
    assert [m["version"] for m in http_client.get_inference_statistics("tiny")["model_stats"]] == ["1", "2"]
    with pytest.raises(InferenceServerException, match="not loaded"):
        http_client.get_inference_statistics("absent")
    with pytest.raises(InferenceServerException) as error:
        client.get_inference_statistics("tiny", "9")
    assert error.value.status() == "StatusCode.NOT_FOUND"


def test_grpc_requests_reach_the_prometheus_metrics(server, client):
    def ok_count() -> float:
        text = httpx.get(f"{server.url}/metrics").text
        lines = [l for l in text.splitlines() if l.startswith('bushu_requests_total{model="tiny",outcome="ok",version="2"}')]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    before = ok_count()
    client.infer("tiny", [grpc_input("x", np.zeros((2, 6), np.float32), "FP32")], model_version="2")
    assert ok_count() == before + 1


def test_repository_index_unload_and_load(client):
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} >= {("gru", "1", "READY"), ("tiny", "2", "READY")}
    client.unload_model("gru")
    assert not client.is_model_ready("gru")
    assert {m["name"]: m.get("state") for m in client.get_model_repository_index(as_json=True)["models"]}["gru"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException) as error:
        client.infer("gru", [grpc_input("ids", np.zeros((1, 3), np.int64), "INT64")])
    assert error.value.status() == "StatusCode.NOT_FOUND"
    client.load_model("gru")
    assert client.is_model_ready("gru", "1")
    with pytest.raises(InferenceServerException, match="no model 'nothing'") as error:
        client.load_model("nothing")
    assert error.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="not supported"):
        client.load_model("gru", config='{"max_batch_size": 8}')


def test_tokens_from_metadata_with_scopes_and_rate_limits(repository):
    tokens = (Token("reader", digest("r-secret"), frozenset({"infer"})),
              Token("admin", digest("a-secret"), frozenset({"infer", "admin"}), rate_per_s=0.001, burst=2))
    with ThreadServer([repository], ServeSettings(tokens=tokens), grpc=True) as running:
        client = triton_grpc.InferenceServerClient(running.grpc_url)
        assert client.is_server_live()  # health stays open, as over HTTP
        x = grpc_input("x", np.zeros((1, 6), np.float32), "FP32")
        with pytest.raises(InferenceServerException, match="bearer token is required") as error:
            client.infer("heads", [x])
        assert error.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException, match="not valid") as error:
            client.infer("heads", [x], headers={"authorization": "Bearer wrong"})
        assert error.value.status() == "StatusCode.UNAUTHENTICATED"
        reader = {"authorization": "Bearer r-secret"}
        assert client.infer("heads", [x], headers=reader).as_numpy("probs").shape == (1, 3)
        with pytest.raises(InferenceServerException, match="lacks the 'admin' scope") as error:
            client.get_model_repository_index(headers=reader)
        assert error.value.status() == "StatusCode.PERMISSION_DENIED"
        admin = {"authorization": "Bearer a-secret"}
        client.get_model_repository_index(headers=admin)
        client.get_model_repository_index(headers=admin)
        with pytest.raises(InferenceServerException, match="rate limit exceeded for admin") as error:
            client.get_model_repository_index(headers=admin)
        assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        # the same buckets as HTTP: the admin token is spent there too
        refused = httpx.post(f"{running.url}/v2/repository/index", headers=admin)
        assert refused.status_code == 429 and refused.headers["retry-after"]
        client.close()


def test_cli_serves_grpc_beside_http_and_drains_on_sigterm(tiny_package):
    with ProcessServer(str(tiny_package), "--grpc-port", "0", "--log-level", "warning") as running:
        client = triton_grpc.InferenceServerClient(running.grpc_url)
        assert client.is_server_ready()
        x = np.ones((2, 6), np.float32)
        over_grpc = client.infer("tiny", [grpc_input("x", x, "FP32")]).as_numpy(client.get_model_metadata("tiny").outputs[0].name)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 6], "data": x.reshape(-1).tolist()}]}
        over_http = httpx.post(f"{running.url}/v2/models/tiny/infer", json=body).json()["outputs"][0]["data"]
        np.testing.assert_array_equal(over_grpc.reshape(-1), np.asarray(over_http, np.float32))
        client.close()
        assert running.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown


def test_a_grpc_port_in_use_stops_the_start_with_one_line(tiny_package):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "bushu.cli", "serve", str(tiny_package), "--port", "0",
                               "--grpc-port", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_shutdown_answers_every_grpc_call_in_flight(slow_package):
    """Stopping the server (as SIGTERM does) lets the gRPC calls it accepted finish before the
    batchers close: every one is answered."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    def accepted(url: str) -> float:  # queued, or dispatched to the model (one may wait in between)
        wanted = ("bushu_queue_depth{", "bushu_queue_seconds_count{")
        return sum(float(ln.split()[-1]) for ln in httpx.get(f"{url}/metrics").text.splitlines() if ln.startswith(wanted))

    server = ThreadServer([slow_package], ServeSettings(threads=1, max_batch_size=1), grpc=True).__enter__()
    try:
        client = triton_grpc.InferenceServerClient(server.grpc_url)
        x = np.ones((1, 1024), np.float32)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client.infer, "slow", [grpc_input("x", x, "FP32")]) for _ in range(4)]
            deadline = time.monotonic() + 30
            while accepted(server.url) < 3:
                assert time.monotonic() < deadline, "the calls never reached the server"
            threading.Thread(target=server.__exit__, daemon=True).start()
            shapes = [f.result(timeout=60).as_numpy("y").shape for f in futures]
        assert shapes == [(1, 1024)] * 4
    finally:
        server.__exit__()


def test_messages_past_the_body_limit_are_refused(repository):
    with ThreadServer([repository], ServeSettings(max_body_bytes=4096), grpc=True) as running:
        client = triton_grpc.InferenceServerClient(running.grpc_url)
        small = grpc_input("x", np.zeros((8, 6), np.float32), "FP32")
        assert client.infer("heads", [small]).as_numpy("probs").shape == (8, 3)
        big = grpc_input("x", np.zeros((200, 6), np.float32), "FP32")  # 4,800 bytes of tensor
        with pytest.raises(InferenceServerException) as error:
            client.infer("heads", [big])
        assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        client.close()


def test_a_server_with_tls_serves_grpc_with_it(tiny_package, tmp_path):
    from fixtures.tls import self_signed

    cert, key = self_signed(tmp_path)
    with ThreadServer([tiny_package], grpc=True, ssl_certfile=str(cert), ssl_keyfile=str(key)) as running:
        secure = triton_grpc.InferenceServerClient(running.grpc_url, ssl=True, root_certificates=str(cert))
        assert secure.is_server_ready()
        x = grpc_input("x", np.ones((1, 6), np.float32), "FP32")
        assert secure.infer("tiny", [x]).get_response().model_name == "tiny"
        secure.close()
        plain = triton_grpc.InferenceServerClient(running.grpc_url)
        with pytest.raises(InferenceServerException) as error:  # no plaintext gRPC beside TLS
            plain.is_server_live(client_timeout=10)
        assert error.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
        plain.close()
