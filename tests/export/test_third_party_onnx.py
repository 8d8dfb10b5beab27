"""ONNX files from other exporters: dims named `?` (or nothing) and weights in external data files."""

import hashlib
import shutil

import numpy as np
import pytest

import bushu
from bushu.errors import IntegrityError, PackageError
from bushu.export import pack_onnx
from bushu.package import Variant, read_manifest
from bushu.package.encryption import encrypt_package
from bushu.package.store import hash_files, write_manifest
from fixtures.files import flip_byte
from fixtures.third_party_onnx import anonymous_dims_conv, external_data_matmul


def reference(path, feeds):
    """The file's own answer, from ONNX Runtime reading it directly (bushu not involved)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_anonymous_dims_are_independent_axes_and_infer_at_two_sizes(tmp_path):
    anonymous_dims_conv(tmp_path / "conv.onnx")
    manifest = pack_onnx(tmp_path / "conv.onnx", tmp_path / "pkg")
    (image,) = manifest.inputs
    assert image.shape == [-1, 3, -1, -1]
    dims = [d for d in image.dims if d is not None]
    assert len(set(dims)) == 3 and "?" not in dims and "" not in dims
    model = bushu.load(tmp_path / "pkg")
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 32, 32), (1, 3, 48, 40)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = model.infer({"image": x})["features"]
        assert got.shape == (shape[0], 4, *shape[2:])
        np.testing.assert_allclose(got, reference(tmp_path / "conv.onnx", {"image": x}), rtol=1e-5, atol=1e-5)


def test_a_manifest_that_kept_question_mark_dims_still_infers(tmp_path):
    """Packages written before this fix named those axes `?`: they are anonymous, not one shared axis."""
    anonymous_dims_conv(tmp_path / "conv.onnx")
    pack_onnx(tmp_path / "conv.onnx", tmp_path / "pkg")
    manifest = read_manifest(tmp_path / "pkg")
    old_style = [spec.model_copy(update={"dims": [d if d is None else "?" for d in spec.dims]})
                 for spec in manifest.inputs]
    write_manifest(tmp_path / "pkg", manifest.model_copy(update={"inputs": old_style}))
    x = np.zeros((2, 3, 48, 40), np.float32)
    assert bushu.load(tmp_path / "pkg").infer({"image": x})["features"].shape == (2, 4, 48, 40)


@pytest.fixture
def external(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    weight = external_data_matmul(source / "model.onnx")
    return source / "model.onnx", weight


def test_external_data_is_packed_hashed_and_loaded(external, tmp_path):
    path, weight = external
    manifest = pack_onnx(path, tmp_path / "pkg")
    data = (path.parent / "weights.data").read_bytes()
    assert manifest.files["weights.data"] == hashlib.sha256(data).hexdigest()
    x = np.random.default_rng(2).standard_normal((5, 64)).astype(np.float32)
    np.testing.assert_allclose(bushu.load(tmp_path / "pkg").infer({"x": x})["y"], x @ weight, rtol=1e-4, atol=1e-4)


def test_changed_external_data_is_refused_even_unverified(external, tmp_path):
    path, _ = external
    pack_onnx(path, tmp_path / "pkg")
    flip_byte(tmp_path / "pkg" / "weights.data", 100)
    for verify in (True, False):  # the data the runtime gets is hashed as it is read
        with pytest.raises(IntegrityError, match="weights.data: contents changed"):
            bushu.load(tmp_path / "pkg", verify=verify)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    """A graph whose data location climbs out of its folder (rewritten by hand: onnx won't write one)."""
    import onnx

    (tmp_path / "models").mkdir()
    external_data_matmul(tmp_path / "models" / "model.onnx")
    model = onnx.load(tmp_path / "models" / "model.onnx", load_external_data=False)
    (entry,) = [e for e in model.graph.initializer[0].external_data if e.key == "location"]
    entry.value = "../weights.data"
    (tmp_path / "models" / "model.onnx").write_bytes(model.SerializeToString())
    shutil.move(tmp_path / "models" / "weights.data", tmp_path / "weights.data")
    with pytest.raises(PackageError, match="points outside"):
        pack_onnx(tmp_path / "models" / "model.onnx", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_a_packaged_graph_naming_data_outside_the_package_is_refused(external, tmp_path):
    """The loader checks the locations itself: a crafted package never reaches a file outside it."""
    import onnx

    path, _ = external
    pkg = tmp_path / "pkg"
    pack_onnx(path, pkg)
    model = onnx.load(pkg / "model.onnx", load_external_data=False)
    (entry,) = [e for e in model.graph.initializer[0].external_data if e.key == "location"]
    entry.value = "../src/weights.data"
    (pkg / "model.onnx").write_bytes(model.SerializeToString())
    write_manifest(pkg, read_manifest(pkg).model_copy(update={"files": hash_files(pkg)}))
    with pytest.raises(PackageError, match="'../src/weights.data' is not a file beside the model"):
        bushu.load(pkg)


def test_encrypted_external_data_is_decrypted_in_memory(external, tmp_path):
    path, weight = external
    pack_onnx(path, tmp_path / "pkg")
    key = bytes(range(32))
    manifest = encrypt_package(tmp_path / "pkg", tmp_path / "enc", key)
    assert "weights.data" in manifest.encryption.files
    x = np.ones((2, 64), np.float32)
    np.testing.assert_allclose(bushu.load(tmp_path / "enc", key=key).infer({"x": x})["y"], x @ weight,
                               rtol=1e-4, atol=1e-4)


def test_openvino_runs_an_onnx_file_with_external_data(external, tmp_path):
    path, weight = external
    pack_onnx(path, tmp_path / "pkg")
    pkg = shutil.copytree(tmp_path / "pkg", tmp_path / "ov")
    manifest = read_manifest(pkg)
    write_manifest(pkg, manifest.model_copy(update={
        "variants": {**manifest.variants, "ov": Variant(file="model.onnx", backend="openvino")}}))
    x = np.ones((3, 64), np.float32)
    np.testing.assert_allclose(bushu.load(pkg, "ov").infer({"x": x})["y"], x @ weight, rtol=1e-4, atol=1e-4)
