import numpy as np
import onnx
import pytest
import torch
from torch import nn

from bushu.export import pack_module, parse_input_spec
from bushu.optimize import preset
from bushu.optimize.fidelity import Metric
from bushu.optimize.hardware import probe
from bushu.optimize.passes import BuildContext, Candidate, Skipped
from bushu.optimize.passes.selective import back_off, sensitivity
from bushu.optimize.samples import Samples
from bushu.package import read_manifest
from fixtures.hardware import needs_int8


class Outlier(nn.Module):
    """Two linear layers; the second sees one huge activation channel that it ignores, so int8's
    per-tensor activation scale, set by that channel, crushes the channels that matter."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(8, 16)
        self.second = nn.Linear(16, 4)
        with torch.no_grad():
            self.first.weight[0] *= 500
            self.second.weight[:, 0] = 0

    def forward(self, x):
        return self.second(self.first(x))


def _ctx(package, samples, allowed=0.01, errors=None):
    errors = errors or {}
    return BuildContext(package, read_manifest(package), "model.onnx", preset("quick"), probe(), samples, None, False,
                        Metric("relative_error", "output", False), lambda c: errors.get(c.name, 0.0), allowed,
                        lambda m: None)


@pytest.fixture(scope="module")
def outlier_package(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("outlier") / "pkg"
    pack_module(Outlier(), [parse_input_spec("x:FP32:batch,8")], out, name="outlier")
    return out


def test_the_op_fed_by_outliers_ranks_most_sensitive(outlier_package, rng):
    x = rng.standard_normal((32, 8)).astype(np.float32)
    samples = Samples({"x": x}, None, [bytes([i]) for i in range(32)], "test")
    scores = sensitivity(_ctx(outlier_package, samples), "model.onnx")
    assert len(scores) == 2
    ranked = sorted(scores, key=scores.get, reverse=True)
    graph = onnx.load(outlier_package / "model.onnx").graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    second = next(n.name for n in graph.node if n.name in scores and 4 in shapes.get(n.input[1], []))
    assert ranked[0] == second and scores[second] > 3 * scores[ranked[1]]


def test_back_off_doubles_the_float_ops_until_the_budget_fits(outlier_package):
    errors = {"full": 0.5, "sel": 0.0}
    built: list[list[str]] = []

    def build(excluded):
        built.append(excluded)
        errors["sel"] = 0.5 / (len(excluded) ** 2)  # 0.5, 0.125, 0.03, 0.0078
        return Candidate("sel", "f", "onnxruntime", "int8", "absent.onnx")

    ctx = _ctx(outlier_package, None, allowed=0.02, errors=errors)
    ranking = [f"op{i}" for i in range(20)]
    result = back_off(ctx, "sel", "f", Candidate("full", "f", "onnxruntime", "int8", "x"), ranking, build)
    assert isinstance(result, Candidate)
    assert [len(e) for e in built] == [1, 2, 4, 8] and built[-1] == ranking[:8]

    errors["full"] = 0.001
    fits = back_off(ctx, "sel", "f", Candidate("full", "f", "onnxruntime", "int8", "x"), ranking, build)
    assert isinstance(fits, Skipped) and "already fits" in fits.reason


@needs_int8
def test_nncf_accuracy_control_brings_int8_within_the_budget_on_calibration_data(outlier_package, tmp_path, rng):
    import shutil

    import bushu
    from bushu.optimize.passes.openvino import nncf_accuracy_control, nncf_int8
    from bushu.optimize.passes.selective import MARGIN

    staging = tmp_path / "pkg"
    shutil.copytree(outlier_package, staging)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    ctx = _ctx(staging, Samples({"x": x}, None, [bytes([i]) for i in range(64)], "test"), allowed=0.02)
    want = bushu.load(staging).infer({"x": x})["output"]

    def error(candidate):
        from bushu.package import Variant

        manifest = ctx.manifest.model_copy(update={"variants": {"v": Variant(file=candidate.file, backend="openvino",
                                                                             precision="int8")}})
        from bushu.runtime.loader import backend_for

        got = backend_for("openvino").load(staging, manifest, "v", "cpu").infer({"x": x})["output"]
        return ctx.metric.score(got, want, None)

    full = nncf_int8(ctx, "full")
    controlled = nncf_accuracy_control(ctx)
    assert isinstance(controlled, Candidate), controlled
    assert error(full) > 0.02  # plain int8 crushes the channels that matter
    assert error(controlled) <= 0.02 * MARGIN
