import numpy as np
import pytest

import bushu
from bushu.errors import BushuError
from bushu.export.compare import relative_error
from bushu.package import Variant, read_manifest
from bushu.runtime.loader import backend_for

pytest.importorskip("openvino")


def test_openvino_runs_the_packaged_onnx_like_onnx_runtime(tiny_package, rng):
    from bushu.runtime.openvino import compile_config

    manifest = read_manifest(tiny_package)
    with_ov = manifest.model_copy(update={"variants": {**manifest.variants, "ov": Variant(file="model.onnx", backend="openvino")}})
    x = rng.standard_normal((5, 6)).astype(np.float32)
    got = backend_for("openvino", threads=1).load(tiny_package, with_ov, "ov", "cpu").infer({"x": x})["output"]
    want = bushu.load(tiny_package).infer({"x": x})["output"]
    assert relative_error(got, want) < 1e-5
    # Precision comes from the variant, never from the plugin's own choice (bf16 on AMX CPUs).
    assert compile_config("fp32")["INFERENCE_PRECISION_HINT"] == "f32"
    assert compile_config("int8")["INFERENCE_PRECISION_HINT"] == "f32"
    assert compile_config("int8+bf16", threads=3) == {
        "INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 3}
    with pytest.raises(BushuError, match="'cpu' only"):
        backend_for("openvino").load(tiny_package, with_ov, "ov", "cuda")
