import numpy as np
import pytest
import torch

from bushu.errors import ExportError, InvalidInput
from bushu.export import export_module, parse_input_spec
from bushu.export.compare import relative_error
from bushu.export.torch_onnx import _verification_sizes
from fixtures.tiny import DataDependent, TinyGRU, TinyMLP


def test_recurrent_model_is_verified_at_several_batch_sizes_and_lengths(tmp_path):
    specs = [parse_input_spec("ids:INT64:batch,sequence")]
    sizes = _verification_sizes(specs)
    assert len({s["batch"] for s in sizes}) >= 3 and len({s["sequence"] for s in sizes}) >= 2

    torch.manual_seed(0)
    module = TinyGRU()
    result = export_module(module, specs, tmp_path / "gru.onnx", value_ranges={"ids": (0, 20)})
    assert result.max_rel_error["output"] < 1e-4
    assert result.outputs[0].shape == [-1, 3]

    # The accepted file really computes what the module computes at an unseen length.
    import onnxruntime as ort

    ids = np.random.default_rng(5).integers(0, 20, size=(4, 23))
    got = ort.InferenceSession(str(tmp_path / "gru.onnx")).run(None, {"ids": ids})[0]
    want = module(torch.from_numpy(ids)).detach().numpy()
    assert relative_error(got, want) < 1e-4


def test_data_dependent_model_is_refused_naming_output_shape_and_error(tmp_path):
    with pytest.raises(ExportError) as info:
        export_module(DataDependent(), [parse_input_spec("x:FP32:-1,4")], tmp_path / "m.onnx")
    message = str(info.value)
    assert "dynamo: export failed" in message  # torch.export cannot branch on data
    assert "torchscript: output 'output' at inputs x=[" in message  # the trace took one branch
    assert "max relative error" in message and "exceeds tolerance" in message
    assert not (tmp_path / "m.onnx").exists()


def test_tolerance_is_enforced(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ExportError, match="exceeds tolerance 0"):
        export_module(TinyMLP(), [parse_input_spec("x:FP32:-1,6")], tmp_path / "m.onnx", tolerance=0.0,
                      exporters=["torchscript"])


def test_the_fallback_exporter_is_used_when_asked(tmp_path):
    result = export_module(TinyMLP(), [parse_input_spec("x:FP32:-1,6")], tmp_path / "m.onnx",
                           exporters=["torchscript"], output_names=["logits"])
    assert result.exporter == "torchscript"
    assert [o.name for o in result.outputs] == ["logits"]
    assert result.outputs[0].shape == [-1, 3]


def test_non_module_and_unknown_exporter_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="torch.nn.Module"):
        export_module(lambda x: x, [parse_input_spec("x:FP32:-1,6")], tmp_path / "m.onnx")
    with pytest.raises(InvalidInput, match="unknown exporter"):
        export_module(TinyMLP(), [parse_input_spec("x:FP32:-1,6")], tmp_path / "m.onnx", exporters=["tf"])


@pytest.mark.parametrize(
    "got, want, expected",
    [
        (np.array([1.0, 2.0]), np.array([1.0, 2.0]), 0.0),
        (np.array([1.0, 2.5]), np.array([1.0, 2.0]), 0.25),
        (np.array([1.0]), np.array([1.0, 2.0]), float("inf")),
        (np.array([np.nan]), np.array([1.0]), float("inf")),
    ],
)
def test_relative_error(got, want, expected):
    assert relative_error(got, want) == pytest.approx(expected)


def test_a_second_recurrent_export_in_one_process_is_still_verified(tmp_path):
    """torch 2.13's dynamo exporter fixes the sequence axis of a GRU it exports a second time
    in one process (seen here: the graph takes only length 7). Verification must catch that
    and the package must still run at every length."""
    import onnxruntime as ort

    specs = [parse_input_spec("ids:INT64:batch,sequence")]
    for i in range(2):
        result = export_module(TinyGRU(), specs, tmp_path / f"g{i}.onnx", value_ranges={"ids": (0, 20)})
        assert result.inputs[0].shape == [-1, -1]
        session = ort.InferenceSession(str(tmp_path / f"g{i}.onnx"))
        for length in (2, 11):
            assert session.run(None, {"ids": np.zeros((3, length), np.int64)})[0].shape == (3, 3)
