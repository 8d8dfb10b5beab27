"""A package never runs code: a pickle that would is refused on every path that reads a file, a
manifest naming a callable is refused on every path that reads a manifest, and neither ever runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
from fixtures.crafted import crafted_manifest
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


# -- a manifest is data: what `provenance.source` names is never called unless it is a Module class --

def torch_package(tiny_package, out, source, kwargs):
    """`tiny_package` run on the PyTorch backend, rebuilding its model from `source(**kwargs)`."""
    return crafted_manifest(
        tiny_package, out,
        **{"variants.torch": {"file": "source/weights.safetensors", "backend": "pytorch"},
           "default_variant": "torch", "provenance.source": source, "provenance.source_kwargs": kwargs})


def payloads(tmp_path):
    """Each names a callable the old loader called with source_kwargs; each tries to create its marker."""
    def marker(name):
        return tmp_path / f"ran-{name}"

    (tmp_path / "evil_net.py").write_text(
        f"open({str(marker('file-path'))!r}, 'w').close()\n"
        "import torch\n\nclass Net(torch.nn.Module):\n    pass\n")
    (tmp_path / "evil_cwd_module.py").write_text(
        f"open({str(marker('cwd-module'))!r}, 'w').close()\n"
        "import torch\n\nclass Net(torch.nn.Module):\n    pass\n")
    return {
        "popen": ("subprocess:Popen", {"args": ["touch", str(marker("popen"))]}, marker("popen")),
        "system": ("os:system", {"command": f"touch {marker('system')}"}, marker("system")),
        "exec": ("builtins:exec", {"source": f"open({str(marker('exec'))!r}, 'w').close()"}, marker("exec")),
        "file-path": ("evil_net.py:Net", {}, marker("file-path")),
        "cwd-module": ("evil_cwd_module:Net", {}, marker("cwd-module")),
    }


def test_a_manifest_naming_a_callable_is_refused_on_load_inspect_and_verify(tiny_package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the file-path source and the module beside the user lie
    path_before = list(sys.path)
    attacks = payloads(tmp_path)
    for name, (source, kwargs, _) in attacks.items():
        pkg = torch_package(tiny_package, tmp_path / f"pkg-{name}", source, kwargs)
        with pytest.raises(BushuError) as refused:
            bushu.load(pkg)
        if name == "cwd-module":  # a well-formed name, but not importable: the working directory is not searched
            assert "cannot import 'evil_cwd_module'" in str(refused.value)
        else:
            assert f"provenance.source {source!r}" in str(refused.value)
        if name != "cwd-module":  # the manifest itself is refused wherever it is read
            for verb in ("inspect", "verify"):
                result = CliRunner().invoke(app, [verb, str(pkg)])
                assert result.exit_code == 1, (verb, name, result.output)
                assert "provenance.source" in result.output
    assert sys.path == path_before, "loading must not add the working directory to sys.path"
    ran = [name for name, (*_, marker) in attacks.items() if marker.exists()]
    assert not ran, f"payloads ran: {ran}"


def test_bushu_serve_refuses_a_manifest_naming_a_callable_and_never_runs_it(tiny_package, tmp_path):
    attacks = {k: v for k, v in payloads(tmp_path).items() if k in ("popen", "system", "file-path")}
    servers = {}
    source_dir = str(Path(bushu.__file__).parents[1])  # this checkout's bushu, from another working directory
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source_dir, os.environ.get("PYTHONPATH", "")])}
    for name, (source, kwargs, _) in attacks.items():
        pkg = torch_package(tiny_package, tmp_path / f"pkg-{name}", source, kwargs)
        servers[name] = subprocess.Popen(
            [sys.executable, "-m", "bushu.cli", "serve", str(pkg), "--port", "0"], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, server in servers.items():
        output, _ = server.communicate(timeout=120)
        assert server.returncode != 0, (name, output)
        assert "provenance.source" in output, (name, output)
    ran = [name for name, (*_, marker) in attacks.items() if marker.exists()]
    assert not ran, f"payloads ran: {ran}"


def test_a_genuine_module_source_still_loads(tiny_package, tmp_path):
    """The check refuses callables, not models: an importable nn.Module subclass loads as before."""
    pkg = torch_package(tiny_package, tmp_path / "genuine", "fixtures.tiny:TinyMLP", {})
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    got = bushu.load(pkg).infer({"x": x})["output"]
    want = bushu.load(tiny_package).infer({"x": x})["output"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_module_attribute_that_is_not_a_module_class_is_never_called(tiny_package, tmp_path):
    """A function in an importable, non-stdlib module is refused too, and never called."""
    pkg = torch_package(tiny_package, tmp_path / "fn", "bushu.package.store:write_manifest",
                        {"directory": str(tmp_path / "written"), "manifest": None})
    with pytest.raises(BushuError, match="is not a torch.nn.Module subclass"):
        bushu.load(pkg)
    assert not (tmp_path / "written").exists()


# -- what runs is what was hashed ---------------------------------------------------------------

def test_a_file_swapped_after_the_check_is_not_what_runs(tiny_package, tmp_path):
    """The server checks a package, then loads it: a model swapped in between is refused, not run."""
    from bushu.serve.repository import check_package

    pkg = shutil.copytree(tiny_package, tmp_path / "swapped")
    check_package(pkg, None)
    other = tmp_path / "other"
    torch.manual_seed(1)
    from bushu.export import pack_module, parse_input_spec
    from fixtures.tiny import TinyMLP

    pack_module(TinyMLP(), [parse_input_spec("x:FP32:batch,6")], other, name="tiny")
    shutil.copyfile(other / "model.onnx", pkg / "model.onnx")  # a valid model, but not the hashed one
    with pytest.raises(BushuError, match="model.onnx: contents changed"):
        bushu.load(pkg, verify=False)
