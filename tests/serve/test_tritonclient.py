"""tritonclient's HTTP client, unchanged, drives bushu: what any V2 client expects must hold."""

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from fixtures.servers import ThreadServer


@pytest.fixture(scope="module")
def server(repository):
    with ThreadServer([repository]) as running:
        yield running


def reference(package, x):
    session = ort.InferenceSession(str(package / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": x})))


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "bushu" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("heads")
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 6]}]
    assert [o["name"] for o in model["outputs"]] == ["logits", "probs"]
    assert client.get_model_metadata("tiny")["versions"] == ["1", "2"]
    assert client.is_model_ready("tiny", "2") and not client.is_model_ready("tiny", "3")
    assert not client.is_model_ready("absent")


@pytest.mark.parametrize("binary", [False, True])
def test_infer_matches_onnxruntime(client, two_heads_package, binary, rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "probs")]
    result = client.infer("heads", [tensor], outputs=outputs, request_id="req-7")
    want = reference(two_heads_package, x)
    np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("probs"), want["probs"], rtol=1e-6, atol=1e-6)
    assert result.get_response()["id"] == "req-7"
    assert result.get_response()["model_version"] == "1"


def test_output_selection_returns_only_what_was_asked(client, two_heads_package, rng):
    x = rng.standard_normal((2, 6)).astype(np.float32)
    tensor = triton.InferInput("x", [2, 6], "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer("heads", [tensor], outputs=[triton.InferRequestedOutput("probs", binary_data=True)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probs"]
    assert result.as_numpy("logits") is None
    np.testing.assert_allclose(result.as_numpy("probs"), reference(two_heads_package, x)["probs"], rtol=1e-6)


def test_specific_version_and_int64_input(client, gru_package, rng):
    ids = rng.integers(0, 20, (3, 9)).astype(np.int64)
    tensor = triton.InferInput("ids", [3, 9], "INT64")
    tensor.set_data_from_numpy(ids)
    result = client.infer("gru", [tensor], model_version="1")
    want = ort.InferenceSession(str(gru_package / "model.onnx")).run(None, {"ids": ids})[0]
    np.testing.assert_allclose(result.as_numpy("output"), want, rtol=1e-5, atol=1e-6)


def test_errors_reach_the_client_as_messages(client):
    tensor = triton.InferInput("x", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 6\]"):
        client.infer("heads", [tensor])
    with pytest.raises(InferenceServerException, match="not loaded"):
        client.infer("absent", [tensor])


def test_repository_index_unload_and_load(client):
    index = {(m["name"], m["version"]): m["state"] for m in client.get_model_repository_index()}
    assert index[("tiny", "1")] == "READY" and index[("heads", "1")] == "READY"
    client.unload_model("gru")
    assert not client.is_model_ready("gru")
    index = {(m["name"], m["version"]): m["state"] for m in client.get_model_repository_index()}
    assert index[("gru", "1")] == "UNAVAILABLE"
    client.load_model("gru")
    assert client.is_model_ready("gru")
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        client.load_model("nope")
