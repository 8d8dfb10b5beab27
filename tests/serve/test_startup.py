"""Starting `bushu serve` as a user does, in a real process: every way a start can fail is one
line that says what and what to do, with a non-zero exit and no traceback (`--debug` adds it);
the address is announced only once it answers."""

import os
import shutil
import socket
import subprocess
import sys

import httpx
import pytest

from bushu.package import read_manifest
from bushu.package.encryption import encrypt_package, generate_key, load_key
from bushu.package.store import hash_files, write_manifest
from serve.test_protection import self_signed


def serve(*args, debug=False):
    env = {k: v for k, v in os.environ.items() if k not in ("BUSHU_KEY", "COLUMNS")}
    command = [sys.executable, "-m", "bushu.cli", *(["--debug"] if debug else []), "serve", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def one_line_error(done) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "serving on" not in done.stdout
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and " bushu.audit " not in ln]  # audit records stay
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def encrypted(tiny_package, tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    generate_key(root / "aes.key")
    return encrypt_package(tiny_package, root / "tiny", load_key(root / "aes.key")) and root / "tiny"


def test_an_encrypted_package_without_its_key_is_one_line_naming_it_and_what_to_do(encrypted):
    line = one_line_error(serve(encrypted, "--port", "0"))
    key_id = read_manifest(encrypted).encryption.key_id
    assert str(encrypted) in line and f"key id {key_id}" in line and "--decrypt-key" in line


def test_debug_shows_the_traceback(encrypted):
    done = serve(encrypted, "--port", "0", debug=True)
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert "DecryptionKeyError" in done.stderr and "serving on" not in done.stdout


def test_a_port_in_use_is_one_line(tiny_package):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = one_line_error(serve(tiny_package, "--port", port))
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line, line


@pytest.mark.parametrize("broken", ["cert", "key", "mismatch", "missing"])
def test_a_bad_tls_file_is_one_line_naming_it(tiny_package, tmp_path, broken):
    cert, key = self_signed(tmp_path)
    if broken == "cert":
        cert.write_text("not a certificate\n")
    elif broken == "key":
        key.write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    elif broken == "mismatch":
        (tmp_path / "other").mkdir()
        shutil.copy(self_signed(tmp_path / "other")[1], key)
    else:
        cert.unlink()
    line = one_line_error(serve(tiny_package, "--port", "0", "--ssl-certfile", cert, "--ssl-keyfile", key))
    named = key if broken == "key" else cert
    assert "TLS" in line and str(named) in line, line
    if broken == "mismatch":
        assert "matches the certificate" in line


def test_a_model_that_fails_to_load_stops_the_start_in_one_line(tiny_package, tmp_path):
    """Hashes right, bytes no model: refused when ONNX Runtime loads it, after the port is bound."""
    pkg = shutil.copytree(tiny_package, tmp_path / "broken")
    (pkg / "model.onnx").write_bytes(b"this is not an ONNX graph")
    manifest = read_manifest(pkg)
    write_manifest(pkg, manifest.model_copy(update={"files": hash_files(pkg)}))
    line = one_line_error(serve(pkg, "--port", "0"))
    assert "cannot start: tiny" in line and "model.onnx" in line


def test_serving_on_is_printed_only_once_the_port_answers(tiny_package):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bushu.cli", "serve", str(tiny_package), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        before = []
        for line in process.stdout:
            if "serving on" in line:
                break
            before.append(line)
        url = line.split("serving on ")[1].strip()
        # one request, no polling: the announced address answers, the model is loaded and ready
        assert httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200
        assert httpx.get(url + "/v2/models/tiny/ready", timeout=5).status_code == 200
        assert any("action=load model=tiny" in ln for ln in before)
    finally:
        process.kill()
        process.communicate()
