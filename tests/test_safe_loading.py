"""A pickle that would run code is refused on every path that reads a file, and never runs."""

import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bushu
from bushu.cli import app
from bushu.errors import BushuError
from bushu.export.source import load_state_dict
from bushu.package import read_manifest
from bushu.package.store import hash_files, write_manifest
from fixtures.pickles import MARKER, Payload, malicious_pickle


def forge(package, tmp_path, rel):
    """A package whose `rel` is the pickle, with a manifest re-hashed to match (a crafted package)."""
    pkg = shutil.copytree(package, tmp_path / "forged")
    (pkg / rel).write_bytes(malicious_pickle())
    write_manifest(pkg, read_manifest(pkg).model_copy(update={"files": hash_files(pkg)}))
    return pkg


def test_weights_via_torch_load_and_safetensors(tmp_path):
    (tmp_path / "evil.pt").write_bytes(malicious_pickle())
    torch.save({"w": Payload()}, tmp_path / "evil2.pt")
    (tmp_path / "evil.safetensors").write_bytes(malicious_pickle())
    for name in ("evil.pt", "evil2.pt", "evil.safetensors"):
        with pytest.raises(BushuError if name.endswith(".pt") else Exception):
            load_state_dict(tmp_path / name)
    assert not MARKER.exists()


def test_pack_of_a_pickle_named_onnx(tmp_path):
    (tmp_path / "model.onnx").write_bytes(malicious_pickle())
    result = CliRunner().invoke(app, ["pack", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "pkg")])
    assert result.exit_code == 1 and "not a valid ONNX model" in result.output
    assert not MARKER.exists()


def test_a_crafted_package_with_a_pickle_as_its_model(tiny_package, tmp_path):
    pkg = forge(tiny_package, tmp_path, "model.onnx")
    with pytest.raises(BushuError, match="onnxruntime cannot load model.onnx"):
        bushu.load(pkg)
    assert not MARKER.exists()


def test_infer_inputs_that_are_pickled_arrays(tiny_package, tmp_path):
    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    MARKER.unlink(missing_ok=True)
    np.save(tmp_path / "x.npy", evil, allow_pickle=True)
    result = CliRunner().invoke(app, ["infer", str(tiny_package), "--input", f"x={tmp_path / 'x.npy'}"])
    assert result.exit_code == 1 and "cannot read" in result.output
    assert not MARKER.exists()


def test_the_server_refuses_a_crafted_package(tiny_package, tmp_path):
    import subprocess
    import sys

    pkg = forge(tiny_package, tmp_path, "model.onnx")
    done = subprocess.run([sys.executable, "-m", "bushu.cli", "serve", str(pkg), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "onnxruntime cannot load model.onnx" in done.stdout + done.stderr
    assert not MARKER.exists()
