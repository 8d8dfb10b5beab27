"""Generation over gRPC: tritonclient's ModelStreamInfer, unchanged, gets one response per token
with the text HTTP's generate route gives; errors arrive in the stream and the stream goes on."""

import queue

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


@pytest.fixture(scope="module")
def server(gpt2_package, tiny_package):
    with ThreadServer([gpt2_package, tiny_package], ServeSettings(threads=1), grpc=True) as running:
        yield running


def text_input(text: str) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
    return tensor


def test_stream_infer_gives_a_response_per_token_with_http_generates_text(server):
    prompt, parameters = "a long time ago in a land far away there lived", {"max_tokens": 12, "ignore_eos": True}
    over_http = httpx.post(f"{server.url}/v2/models/tiny-gpt2/generate",
                           json={"text_input": prompt, "parameters": parameters}, timeout=60).json()
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("tiny-gpt2", [text_input(prompt)], request_id="s-1", parameters=parameters)
    pieces, final = [], None
    while final is None:
        result, error = answers.get(timeout=60)
        assert error is None, error
        response = result.get_response()
        assert response.id == "s-1" and response.outputs[0].datatype == "BYTES"
        pieces.append(result.as_numpy("text_output")[0].decode())
        if response.parameters["triton_final_response"].bool_param:
            final = response
    assert "".join(pieces) == over_http["text_output"]
    assert len(pieces) == over_http["completion_tokens"] == 12
    assert final.parameters["finish_reason"].string_param == over_http["finish_reason"]

    # an error is that request's message in the stream; the next request on the stream is served
    client.async_stream_infer("tiny-gpt2", [text_input(prompt)], parameters={"temperature": -1})
    result, error = answers.get(timeout=60)
    assert result is None and "temperature" in str(error)
    tiny = triton_grpc.InferInput("x", [1, 6], "FP32")
    tiny.set_data_from_numpy(np.ones((1, 6), np.float32))
    client.async_stream_infer("tiny", [tiny])
    result, error = answers.get(timeout=60)
    assert error is None and result.as_numpy(result.get_response().outputs[0].name).shape == (1, 3)
    client.stop_stream()
    client.close()


def test_model_infer_on_a_generator_gives_the_whole_text(server):
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    max_tokens = triton_grpc.InferInput("max_tokens", [1], "INT32")  # a sampling field as a one-value tensor
    max_tokens.set_data_from_numpy(np.array([5], np.int32))
    result = client.infer("tiny-gpt2", [text_input("the cat"), max_tokens])
    over_http = httpx.post(f"{server.url}/v2/models/tiny-gpt2/generate",
                           json={"text_input": "the cat", "max_tokens": 5}, timeout=60).json()
    response = result.get_response()
    assert result.as_numpy("text_output")[0].decode() == over_http["text_output"]
    assert response.parameters["completion_tokens"].int64_param == over_http["completion_tokens"] == 5
    with pytest.raises(InferenceServerException, match="'text_input' is missing") as error:
        client.infer("tiny-gpt2", [max_tokens])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.close()
