"""Compressed bodies as Triton takes them: tritonclient's HTTP request and response compression
(binary header length = the uncompressed JSON header), and what a bad compressed body gets."""

import gzip
import zlib

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


@pytest.fixture(scope="module")
def server(repository):
    with ThreadServer([repository], ServeSettings(max_body_bytes=64 * 1024)) as running:
        yield running


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compression_both_ways_changes_no_answer(client, algorithm, binary, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    tensor = triton.InferInput("x", [4, 6], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probs", binary_data=binary)]
    plain = client.infer("heads", [tensor], outputs=outputs)
    packed = client.infer("heads", [tensor], outputs=outputs, request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    np.testing.assert_array_equal(packed.as_numpy("probs"), plain.as_numpy("probs"))


def test_responses_are_compressed_only_when_asked(server):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 6], "data": [0.5] * 12}]}
    url = f"{server.url}/v2/models/heads/infer"
    for asked, coding in (("gzip", "gzip"), ("deflate;q=1, gzip;q=0", "deflate"), ("identity", None), ("br", None)):
        with httpx.stream("POST", url, json=body, headers={"accept-encoding": asked}) as response:
            raw = b"".join(response.iter_raw())
        assert response.status_code == 200 and response.headers.get("content-encoding") == coding
        if coding == "gzip":
            raw = gzip.decompress(raw)
        elif coding == "deflate":
            raw = zlib.decompress(raw)
        assert b'"outputs"' in raw


def test_bad_compressed_bodies_get_clear_answers(server):
    url = f"{server.url}/v2/models/heads/infer"
    doc = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [1, 2, 3, 4, 5, 6]}]}'
    ok = httpx.post(url, content=zlib.compress(doc)[2:-4], headers={"content-encoding": "deflate"})  # raw deflate
    assert ok.status_code == 200, ok.text
    broken = httpx.post(url, content=b"not gzip at all", headers={"content-encoding": "gzip"})
    assert broken.status_code == 400 and "not valid gzip" in broken.json()["error"]
    truncated = httpx.post(url, content=gzip.compress(doc)[:-12], headers={"content-encoding": "gzip"})
    assert truncated.status_code == 400 and "truncated" in truncated.json()["error"]
    unknown = httpx.post(url, content=doc, headers={"content-encoding": "br"})
    assert unknown.status_code == 415 and "gzip, deflate or identity" in unknown.json()["error"]
    bomb = gzip.compress(b" " * (10 * 1024 * 1024))  # 10 KB that inflate to 10 MB, past the 64 KB limit
    refused = httpx.post(url, content=bomb, headers={"content-encoding": "gzip"})
    assert refused.status_code == 413 and "inflates past the limit of 65536 bytes" in refused.json()["error"]
    # the app routes read bodies the same way
    search = httpx.post(f"{server.url}/v1/models/heads/predict", content=b"\x1f\x8b junk",
                        headers={"content-encoding": "gzip"})
    assert search.status_code == 400 and "gzip" in search.json()["error"]
