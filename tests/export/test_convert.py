"""The framework-independent half of importing (export/convert.py): verification against the
source's own run, the dynamic batch axis for batch-1 files, and its honest fallback."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from bushu.errors import ExportError
from bushu.export.convert import Converter, Source, convert_verified
from bushu.package.manifest import TensorSpec


def _write(path: Path, nodes, initializers, input_name="in_0", output_name="out_0") -> None:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 6])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _source(run) -> Source:
    return Source("numpy", "test", [TensorSpec(name="x", datatype="FP32", shape=[1, 6])], ["y"], run)


def test_a_batch_1_graph_gets_a_dynamic_batch_and_keeps_the_source_names(tmp_path):
    def double_then_flatten(target: Path) -> None:  # y = reshape(2x, [1, 6]): the batch pinned at 1
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 6])
        two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
        _write(target, [helper.make_node("Mul", ["in_0", "two"], ["d"]),
                        helper.make_node("Reshape", ["d", "shape"], ["out_0"])], [shape, two])

    result = convert_verified(_source(lambda a: {"y": 2 * a["x"]}), [Converter("mul", double_then_flatten)],
                              tmp_path / "m.onnx")
    assert result.warnings == ["batch axis made dynamic"]
    assert result.inputs[0].shape == [-1, 6] and result.inputs[0].dims == ["batch", None]
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["y"]


def test_a_graph_that_only_works_at_batch_1_stays_fixed_and_says_why(tmp_path):
    def transpose_then_reshape(target: Path) -> None:  # the 1 in [1, 6] is not the batch here
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 6])
        _write(target, [helper.make_node("Transpose", ["in_0"], ["t"], perm=[1, 0]),
                        helper.make_node("Reshape", ["t", "shape"], ["out_0"])], [shape])

    result = convert_verified(_source(lambda a: {"y": a["x"].T.reshape(1, 6)}),
                              [Converter("tr", transpose_then_reshape)], tmp_path / "m.onnx")
    assert result.inputs[0].shape == [1, 6]
    assert result.warnings[0].startswith("batch fixed at 1 as in the source (a dynamic batch did not verify:")


def test_a_converter_that_computes_something_else_is_refused_with_its_error(tmp_path):
    def negate(target: Path) -> None:
        _write(target, [helper.make_node("Neg", ["in_0"], ["out_0"])], [])

    with pytest.raises(ExportError, match=r"neg: output 'y' at inputs x=\[1, 6\]: max relative error 2 exceeds"):
        convert_verified(_source(lambda a: {"y": a["x"].copy()}), [Converter("neg", negate)], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
