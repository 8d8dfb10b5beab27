"""Packages from elsewhere, served: third-party ONNX files (anonymous dims, external data) answer
over V2, and a package that names files outside itself never gets past the server's check."""

import shutil

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from bushu.errors import IntegrityError
from bushu.export import pack_onnx
from bushu.serve.repository import check_package
from fixtures.crafted import crafted_manifest
from fixtures.servers import ThreadServer
from fixtures.third_party_onnx import anonymous_dims_conv, external_data_matmul


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """A repository of two third-party-style ONNX files, packed as `bushu pack` packs them."""
    tmp = tmp_path_factory.mktemp("third-party")
    anonymous_dims_conv(tmp / "conv.onnx")
    (tmp / "ext").mkdir()
    weight = external_data_matmul(tmp / "ext" / "model.onnx")
    repo = tmp / "repo"
    pack_onnx(tmp / "conv.onnx", repo / "conv" / "1", name="conv")
    pack_onnx(tmp / "ext" / "model.onnx", repo / "ext" / "1", name="ext")
    return tmp, repo, weight


@pytest.fixture(scope="module")
def server(third_party):
    with ThreadServer([third_party[1]]) as running:
        yield running


def test_a_model_with_question_mark_dims_serves_two_spatial_sizes_at_once(server, third_party):
    session = ort.InferenceSession(str(third_party[0] / "conv.onnx"), providers=["CPUExecutionProvider"])
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), concurrency=2)
    rng = np.random.default_rng(3)
    images = [rng.standard_normal(shape).astype(np.float32) for shape in [(2, 3, 32, 32), (1, 3, 48, 40)]]
    pending = []
    for x in images:  # in flight together: the batcher must keep the two sizes apart
        tensor = triton.InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        pending.append(client.async_infer("conv", [tensor]))
    try:
        for x, request in zip(images, pending):
            got = request.get_result().as_numpy("features")
            np.testing.assert_allclose(got, session.run(None, {"image": x})[0], rtol=1e-5, atol=1e-5)
    finally:
        client.close()


def test_a_model_with_external_data_serves(server, third_party):
    weight = third_party[2]
    x = np.random.default_rng(4).standard_normal((3, 64)).astype(np.float32)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 64], "data": x.ravel().tolist()}]}
    answer = httpx.post(f"{server.url}/v2/models/ext/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    (y,) = answer.json()["outputs"]
    assert y["name"] == "y" and y["shape"] == [3, 16]
    np.testing.assert_allclose(np.asarray(y["data"], np.float32).reshape(3, 16), x @ weight, rtol=1e-4, atol=1e-4)


def test_the_server_refuses_a_step_that_names_a_file_outside_the_package(tiny_package, tmp_path):
    pkg = crafted_manifest(tiny_package, tmp_path / "escape", postprocessing=[
        {"kind": "top_k_unseen", "params": {"k": 2, "input": "x", "seen": "/etc/passwd", "n_users": 3}}])
    with pytest.raises(IntegrityError, match=r"postprocessing step 0 \(top_k_unseen\) names '/etc/passwd'"):
        check_package(pkg, None)
    shutil.rmtree(pkg)


@pytest.mark.parametrize("which", ["seen", "vocab"])
def test_a_step_file_swapped_after_the_check_is_refused_at_load(which, recsys_package, text_package, tmp_path):
    """The app routes' step files (the recommender's seen items, the tokenizer's vocabulary) reach
    the server through the same hash check as the model: bytes that changed after the package was
    checked are refused, naming the file, instead of being used."""
    from bushu.package import read_manifest
    from bushu.package.files import PackageFiles
    from bushu.serve.predict import Predictor
    from fixtures.files import flip_byte

    source = recsys_package if which == "seen" else text_package
    pkg = shutil.copytree(source, tmp_path / "pkg")
    manifest = check_package(pkg, None)
    steps = [*manifest.preprocessing, *manifest.postprocessing]
    rel = next(s.params[which] for s in steps if which in s.params)
    Predictor(manifest, pkg, read=PackageFiles(pkg, manifest).read)  # the untouched package loads
    flip_byte(pkg / rel, 10)
    with pytest.raises(IntegrityError, match=rel):
        Predictor(manifest, pkg, read=PackageFiles(pkg, read_manifest(pkg)).read)
