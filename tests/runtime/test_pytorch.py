"""The PyTorch backend on the CPU: the same code path the GPU runs, device cpu."""

import shutil

import numpy as np
import pytest

import bushu
from bushu.apps.vision.data import load_digits_split, to_tensors
from bushu.errors import BushuError, PackageError
from bushu.export.compare import relative_error
from bushu.package import Variant, read_manifest
from bushu.package.store import write_manifest


def with_variants(package, out, **variants):
    pkg = shutil.copytree(package, out)
    manifest = read_manifest(pkg)
    write_manifest(pkg, manifest.model_copy(update={"variants": {**manifest.variants, **variants}}))
    return pkg


def torch_variant(precision="fp32", **options):
    return Variant(file="source/weights.safetensors", backend="pytorch", precision=precision, options=options)


@pytest.fixture(scope="module")
def images():
    return to_tensors(load_digits_split().test_images[:64])


@pytest.fixture(scope="module")
def multi(vision_package, tmp_path_factory):
    return with_variants(
        vision_package, tmp_path_factory.mktemp("torch") / "digits",
        **{"torch-fp32": torch_variant(), "torch-bf16": torch_variant("bf16"),
           "torch-fp16": torch_variant("fp16"), "torch-buckets": torch_variant(buckets=[4, 16, 64])},
    )


def test_fp32_matches_onnxruntime(multi, images):
    reference = bushu.load(multi).infer({"image": images})["logits"]
    got = bushu.load(multi, "torch-fp32").infer({"image": images})["logits"]
    assert got.dtype == np.float32 and relative_error(got, reference) < 1e-5


@pytest.mark.parametrize("variant, bound", [("torch-bf16", 2e-2), ("torch-fp16", 2e-3)])
def test_half_precisions_stay_within_their_bound(multi, images, variant, bound):
    reference = bushu.load(multi).infer({"image": images})["logits"]
    got = bushu.load(multi, variant).infer({"image": images})["logits"]
    assert got.dtype == np.float32  # outputs come back as FP32, as the manifest says
    assert relative_error(got, reference) < bound
    assert (got.argmax(1) == reference.argmax(1)).mean() >= 0.98


def test_bucket_padding_returns_exactly_the_real_rows(multi, images):
    model = bushu.load(multi, "torch-buckets")
    plain = bushu.load(multi, "torch-fp32")
    seen: list[int] = []
    model._module.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    many = np.concatenate([images, images[::-1], images[:22]])  # 150 rows: more than the largest bucket
    for rows in (1, 3, 5, 17, 64, 150):
        got = model.infer({"image": many[:rows]})["logits"]
        assert got.shape == (rows, 10)
        np.testing.assert_allclose(got, plain.infer({"image": many[:rows]})["logits"], rtol=1e-5, atol=1e-5)
    assert seen == [4, 4, 16, 64, 64, 64, 64, 64]  # padded up to a bucket; 150 rows as 64 + 64 + 22→64


def test_the_pytorch_variant_is_served(multi, images):
    import httpx

    from bushu.serve.settings import ServeSettings
    from fixtures.servers import ThreadServer

    single = shutil.copytree(multi, multi.parent / "served")
    write_manifest(single, read_manifest(multi).model_copy(update={"default_variant": "torch-bf16"}))
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 3, 32, 32], "data": images[:2].ravel().tolist()}]}
    with ThreadServer([single], ServeSettings()) as server:
        r = httpx.post(server.url + "/v2/models/digits-cnn/infer", json=body, timeout=30)
        meta = httpx.get(server.url + "/v2/models/digits-cnn").json()
    assert r.status_code == 200 and meta["platform"] == "pytorch_torchscript"
    got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 10)
    reference = bushu.load(multi).infer({"image": images[:2]})["logits"]
    assert relative_error(got, reference) < 2e-2


def test_errors(multi, tiny_package, tmp_path):
    with pytest.raises(BushuError, match="no CUDA device"):
        bushu.load(multi, "torch-fp32", device="cuda")
    broken = shutil.copytree(tiny_package, tmp_path / "broken")
    manifest = read_manifest(broken)
    write_manifest(broken, manifest.model_copy(update={
        "variants": {**manifest.variants, "torch": torch_variant()},
        "provenance": manifest.provenance.model_copy(update={"source": "fixtures.tiny:TinyGRU"})}))
    with pytest.raises(PackageError, match="weights do not fit fixtures.tiny:TinyGRU"):
        bushu.load(broken, "torch")


@pytest.mark.slow
def test_compiled_variant_matches_eager(multi, images, tmp_path):
    pkg = with_variants(multi, tmp_path / "compiled", compiled=torch_variant(compile=True, buckets=[8, 64]))
    got = bushu.load(pkg, "compiled").infer({"image": images[:5]})["logits"]
    want = bushu.load(pkg, "torch-fp32").infer({"image": images[:5]})["logits"]
    assert relative_error(got, want) < 1e-4


def test_constructor_arguments_travel_in_the_manifest(tmp_path):
    """A module whose constructor needs arguments is rebuilt with the ones it was packed with."""
    import torch

    from bushu.export import pack_module, parse_input_spec
    from fixtures.tiny import TinyMLP

    torch.manual_seed(0)
    out = tmp_path / "wide"
    pack_module(TinyMLP(features=5, classes=4), [parse_input_spec("x:FP32:batch,5")], out, name="wide",
                source="fixtures.tiny:TinyMLP", source_kwargs={"features": 5, "classes": 4})
    pkg = with_variants(out, tmp_path / "with-torch", torch=torch_variant())
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    got = bushu.load(pkg, "torch").infer({"x": x})["output"]
    assert got.shape == (3, 4) and relative_error(got, bushu.load(pkg).infer({"x": x})["output"]) < 1e-5
    manifest = read_manifest(pkg)
    write_manifest(pkg, manifest.model_copy(update={"provenance": manifest.provenance.model_copy(
        update={"source_kwargs": {"features": 5, "classes": 3}})}))
    with pytest.raises(PackageError, match="weights do not fit fixtures.tiny:TinyMLP"):
        bushu.load(pkg, "torch")


def test_a_compiled_model_runs_every_batch_on_the_one_thread_that_owns_its_graphs(tiny_package):
    """CUDA graphs replay only on the thread that captured them, and the server calls from a pool."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from bushu.runtime.pytorch import PyTorchModel
    from fixtures.tiny import TinyMLP

    class Recording(TinyMLP):
        def __init__(self) -> None:
            super().__init__()
            self.threads: set[int] = set()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.threads.add(threading.get_ident())
            return super().forward(x)

    module = Recording().eval()
    # compiled=True gives the model its owner thread; the module itself need not be compiled for that
    model = PyTorchModel(read_manifest(tiny_package), "torch", "cpu", module, "fp32", (4, 16), compiled=True)
    model.warm_up()
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    module.threads.clear()
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda i: model.infer({"x": x[i : i + 3]})["output"], range(0, 39, 3)))
    assert np.allclose(np.concatenate(parts), want[:39], atol=1e-6)
    assert len(module.threads) == 1 and threading.get_ident() not in module.threads
    assert model.on_owner(threading.get_ident) in module.threads
    model.close()
