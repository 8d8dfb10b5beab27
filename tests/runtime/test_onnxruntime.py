import numpy as np
import pytest

import bushu
from bushu.errors import IntegrityError, InvalidInput, NotFound
from bushu.export import pack_module, parse_input_spec
from fixtures.files import flip_byte
from fixtures.tiny import TinyGRU


def test_infer_returns_every_output_or_the_selected_ones(tiny_package, rng):
    model = bushu.load(tiny_package)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    out = model.infer({"x": x})
    assert list(out) == ["output"] and out["output"].shape == (5, 3)
    assert model.infer({"x": x}, outputs=["output"])["output"].shape == (5, 3)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({}, r"missing input\(s\) \['x'\]"),
        ({"x": np.zeros((2, 6), np.float32), "y": np.zeros(1)}, r"unknown input\(s\) \['y'\]"),
        ({"x": np.zeros((2, 6), np.float64)}, "expected datatype FP32, got FP64"),
        ({"x": np.zeros((2, 5), np.float32)}, r"expected shape \[-1, 6\].*got \[2, 5\]"),
        ({"x": np.zeros((6,), np.float32)}, "expected shape"),
        ({"x": [[0.0] * 6]}, "expected a numpy array"),
    ],
)
def test_bad_inputs_get_clear_errors(tiny_package, inputs, message):
    with pytest.raises(InvalidInput, match=message):
        bushu.load(tiny_package).infer(inputs)


def test_unknown_output_and_variant(tiny_package):
    model = bushu.load(tiny_package)
    with pytest.raises(InvalidInput, match="unknown output"):
        model.infer({"x": np.zeros((1, 6), np.float32)}, outputs=["nope"])
    with pytest.raises(NotFound, match="variant 'int9'"):
        bushu.load(tiny_package, "int9")


def test_named_axes_must_agree_across_inputs(tmp_path):
    class Two(TinyGRU):
        def forward(self, ids, mask):  # noqa: D102
            return super().forward(ids * mask)

    specs = [parse_input_spec("ids:INT64:batch,seq"), parse_input_spec("mask:INT64:batch,seq")]
    pack_module(Two(), specs, tmp_path / "two", name="two", value_ranges={"ids": (0, 20), "mask": (0, 2)})
    model = bushu.load(tmp_path / "two")
    ids = np.zeros((2, 5), np.int64)
    assert model.infer({"ids": ids, "mask": np.ones((2, 5), np.int64)})["output"].shape == (2, 3)
    with pytest.raises(InvalidInput, match="axis 'seq' is 4 in input 'mask' but 5 in input 'ids'"):
        model.infer({"ids": ids, "mask": np.ones((2, 4), np.int64)})


def test_a_tampered_package_is_refused_at_load(tiny_package, tmp_path):
    import shutil

    pkg = shutil.copytree(tiny_package, tmp_path / "p")
    flip_byte(pkg / "model.onnx", 100)
    with pytest.raises(IntegrityError, match="model.onnx"):
        bushu.load(pkg)
