import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from bushu.cli import app
from bushu.export.compare import relative_error
from bushu.package import MANIFEST_NAME, read_manifest
from fixtures.files import flip_byte
from fixtures.tiny import TinyMLP


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(3)
    module = TinyMLP()
    torch.save(module.state_dict(), tmp_path / "w.pt")
    return module, tmp_path / "w.pt"


def test_pack_inspect_verify_infer_round_trip(weights, tmp_path):
    module, path = weights
    out = tmp_path / "pkg"
    result = run("pack", "fixtures.tiny:TinyMLP", "-o", out, "--weights", path, "--input", "x:FP32:batch,6",
                 "--output-name", "logits", "--labels", "a,b,c", "--task", "classification")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest.labels == ["a", "b", "c"] and manifest.outputs[0].name == "logits"
    assert manifest.provenance.source == "fixtures.tiny:TinyMLP"
    assert manifest.variants["onnx-fp32"].max_rel_error["logits"] < 1e-4

    shown = run("inspect", out)
    assert shown.exit_code == 0 and "logits" in shown.output and "['batch', 6]" in shown.output
    as_json = json.loads(run("inspect", out, "--json").output)
    assert as_json["name"] == "TinyMLP" and as_json["digest"] == manifest.digest()

    assert run("verify", out).exit_code == 0

    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run("infer", out, "--input", f"x={tmp_path / 'x.npy'}", "--out", tmp_path / "res")
    assert result.exit_code == 0, result.output
    assert "logits float32 [4, 3]" in result.output
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert relative_error(np.load(tmp_path / "res" / "logits.npy"), want) < 1e-5


def test_safetensors_weights_are_accepted(tmp_path):
    module = TinyMLP()
    save_file(module.state_dict(), tmp_path / "w.safetensors")
    result = run("pack", "fixtures.tiny:TinyMLP", "-o", tmp_path / "pkg", "--weights",
                 tmp_path / "w.safetensors", "--input", "x:FP32:-1,6")
    assert result.exit_code == 0, result.output


def test_verify_names_the_flipped_file_and_exits_nonzero(tiny_package, tmp_path):
    for rel in [MANIFEST_NAME, *read_manifest(tiny_package).files]:
        pkg = shutil.copytree(tiny_package, tmp_path / rel.replace("/", "_"))
        flip_byte(pkg / rel, (pkg / rel).stat().st_size // 3)
        result = run("verify", pkg)
        assert result.exit_code == 1
        assert rel in result.output and "error" in result.output


class Payload:
    def __reduce__(self):
        return (open, ("/tmp/bushu-pwned-by-pickle", "w"))


@pytest.mark.parametrize("save", ["torch.save", "pickle.dumps"])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, save):
    import os

    marker = "/tmp/bushu-pwned-by-pickle"
    if os.path.exists(marker):
        os.unlink(marker)
    if save == "torch.save":
        torch.save({"fc1.weight": Payload()}, tmp_path / "evil.pt")
    else:
        (tmp_path / "evil.pt").write_bytes(pickle.dumps({"fc1.weight": Payload()}))
    result = run("pack", "fixtures.tiny:TinyMLP", "-o", tmp_path / "pkg", "--weights", tmp_path / "evil.pt",
                 "--input", "x:FP32:-1,6")
    assert result.exit_code == 1
    assert "refused to load" in result.output
    assert not os.path.exists(marker)
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["pack", "fixtures.tiny:Nope", "--input", "x:FP32:-1,6"], "has no attribute 'Nope'"),
        (["pack", "no_such_module:X", "--input", "x:FP32:-1,6"], "cannot import"),
        (["pack", "fixtures.tiny:TinyMLP"], "needs --input"),
        (["pack", "fixtures.tiny:TinyMLP", "--input", "x:FP32:-1,7"], "fails on example inputs of shape [2, 7]"),
        (["pack", "fixtures.tiny:TinyMLP", "--input", "x:FP32:-1,6", "--output-name", "a", "--output-name", "b"],
         "2 output name(s) given"),
        (["pack", "fixtures.tiny:TinyMLP", "--input", "x:FP32:-1,6", "--kwargs", "[1]"], "JSON object"),
        (["pack", "fixtures.tiny:TinyMLP", "--input", "x:FP32:-1,6", "--weights", "/nonexistent.pt"], "does not exist"),
    ],
)
def test_pack_errors_are_clear_and_write_nothing(tmp_path, args, message):
    result = run(*args, "-o", tmp_path / "pkg")
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "pkg").exists()


def test_wrong_weights_are_refused(tmp_path):
    torch.save(TinyMLP(features=7).state_dict(), tmp_path / "w.pt")
    result = run("pack", "fixtures.tiny:TinyMLP", "-o", tmp_path / "pkg", "--weights", tmp_path / "w.pt",
                 "--input", "x:FP32:-1,6")
    assert result.exit_code == 1 and "does not fit" in result.output


def test_infer_errors(tiny_package, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), np.float32))
    result = run("infer", tiny_package, "--input", f"x={tmp_path / 'bad.npy'}")
    assert result.exit_code == 1 and "expected shape" in result.output
    result = run("infer", tiny_package, "--input", "x")
    assert result.exit_code == 1 and "NAME=file.npy" in result.output
    result = run("infer", tiny_package, "--input", f"x={tmp_path / 'absent.npy'}")
    assert result.exit_code == 1 and "cannot read" in result.output
