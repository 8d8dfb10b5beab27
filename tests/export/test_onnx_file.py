import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import bushu
from bushu.errors import PackageError
from bushu.export import pack_onnx


def make_onnx(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_existing_onnx_is_packaged_as_is_with_dynamic_axes(tmp_path):
    make_onnx(tmp_path / "scale.onnx")
    manifest = pack_onnx(tmp_path / "scale.onnx", tmp_path / "pkg")
    assert manifest.name == "scale" and manifest.framework == "onnx"
    (spec,) = manifest.inputs
    assert spec.datatype == "FP32" and spec.shape == [-1, -1, 4] and spec.dims == ["batch", "seq", None]
    assert (tmp_path / "pkg" / "model.onnx").read_bytes() == (tmp_path / "scale.onnx").read_bytes()
    x = np.ones((2, 5, 4), np.float32)
    out = bushu.load(tmp_path / "pkg").infer({"x": x})["y"]
    np.testing.assert_array_equal(out, x * np.array([1, 2, 3, 4], np.float32))


def test_invalid_onnx_is_refused_and_nothing_is_written(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(PackageError, match="not a valid ONNX model"):
        pack_onnx(bad, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
