import json
import os
import pickle
import shutil
import subprocess
import sys

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
        (["pack", "/nonexistent"], "/nonexistent: no such file or directory"),
        (["pack", "/nonexistent/model.onnx"], "/nonexistent/model.onnx: no such file or directory"),
        (["pack", "missing_file.py:Net", "--input", "x:FP32:-1,6"], "missing_file.py: no such file or directory"),
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


def _piped(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """A real `bushu` process (or Python snippet) with stdout and stderr pipes and $COLUMNS unset."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "bushu.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_the_demo_table_is_whole_when_piped():
    """On a pipe rich assumed 80 columns and cut cells ("recommendati…"); each row is now whole, on one line."""
    rows = [["vision (seed CNN)", "held-out accuracy 98.06%", "PNG of a 3 → 3 (1.00)", "2.1", "1.52× (ort-int8-static-minmax)"],
            ["recommendation (MF)", "recall@10 0.331 (oracle 0.412)", "user 42 → items 113, 53, 1203, 5, 77", "1.0", "—"]]
    done = _piped(code=f"from bushu.cli.common import out; from bushu.demo import summary_table; "
                       f"out.print(summary_table({rows!r}))")
    assert done.returncode == 0, done.stderr
    for row in rows:
        assert any(all(cell in line for cell in row) for line in done.stdout.splitlines()), done.stdout
    assert "…" not in done.stdout


def test_other_libraries_noise_only_with_verbose(tiny_package, tmp_path):
    """ONNX Runtime's quantiser warns on the root logger on every call, and its calibrator prints."""
    x = np.random.default_rng(0).standard_normal((120, 6)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x[:80])
    np.savez(tmp_path / "cal.npz", x=x[80:])
    args = ["optimize", str(tiny_package), "--eval", str(tmp_path / "eval.npz"), "--calibration",
            str(tmp_path / "cal.npz"), "--families", "ort-static", "--preset", "quick", "--batch", "8"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    procs = [subprocess.Popen([sys.executable, "-m", "bushu.cli", *flag, *args, "-o", str(tmp_path / name)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for flag, name in (((), "quiet"), (("--verbose",), "loud"))]  # side by side: half the wall time
    quiet, loud = (subprocess.CompletedProcess(p.args, p.wait(300), *p.communicate()) for p in procs)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "pre-processing before quantization" in loud.stderr  # the noise exists, so its absence means something
    assert "pre-processing before quantization" not in quiet.stderr + quiet.stdout
    assert "Collecting tensor data" not in quiet.stdout
    assert "chose " in quiet.stdout  # bushu's own output is still there


def test_transformers_progress_bars_only_with_verbose():
    """transformers draws a "Loading weights" bar on every from_pretrained (MiniLM in `pack` and the demo)."""
    done = _piped(code="from bushu.cli.output import configure; configure(verbose=False)\n"
                       "from transformers.utils import logging as hf\n"
                       "print(hf.is_progress_bar_enabled(), hf.get_verbosity())\n"
                       "configure(verbose=True); print(hf.is_progress_bar_enabled(), hf.get_verbosity())\n")
    assert done.returncode == 0, done.stderr
    import logging

    assert done.stdout.split() == ["False", str(logging.ERROR), "True", str(logging.INFO)]
