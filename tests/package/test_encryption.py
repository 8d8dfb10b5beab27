import base64
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import bushu
from bushu.cli import app
from bushu.package import read_manifest, verify_package
from bushu.errors import IntegrityError
from bushu.package.encryption import DecryptionKeyError, decrypt, encrypt_package, generate_key, key_id, load_key
from fixtures.files import flip_byte


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aes") / "model.key"
    generate_key(path)
    return path


@pytest.fixture(scope="module")
def encrypted(tiny_package, key, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "tiny"
    result = CliRunner().invoke(app, ["encrypt", str(tiny_package), "-o", str(out), "--key-file", str(key)])
    assert result.exit_code == 0, result.output
    return out


def test_model_and_weights_are_encrypted_and_still_verify(encrypted, tiny_package, key):
    manifest = verify_package(encrypted)  # hashes cover the ciphertext: no key needed to verify
    assert manifest.encryption.files == ["model.onnx", "source/weights.safetensors"]
    assert manifest.encryption.key_id == key_id(load_key(key))
    for rel in manifest.encryption.files:
        plain, cipher = (tiny_package / rel).read_bytes(), (encrypted / rel).read_bytes()
        assert plain[64:128] not in cipher and len(cipher) == len(plain) + 12 + 16
    assert read_manifest(tiny_package).encryption is None  # the source is untouched


def test_it_runs_with_the_key_and_computes_the_same(encrypted, tiny_package, key, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    want = bushu.load(tiny_package).infer({"x": x})["output"]
    np.testing.assert_array_equal(bushu.load(encrypted, key=load_key(key)).infer({"x": x})["output"], want)


def test_missing_or_wrong_key_names_the_key_id(encrypted, tmp_path, monkeypatch):
    monkeypatch.delenv("BUSHU_KEY", raising=False)
    wanted = read_manifest(encrypted).encryption.key_id
    with pytest.raises(DecryptionKeyError, match=f"key id {wanted}; pass its key"):
        bushu.load(encrypted)
    with pytest.raises(DecryptionKeyError, match=f"key id {wanted}, not with the given key"):
        bushu.load(encrypted, key=os.urandom(32))
    monkeypatch.setenv("BUSHU_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(DecryptionKeyError, match="not with the given key"):
        bushu.load(encrypted)


def test_a_key_from_the_environment_works(encrypted, key, monkeypatch, rng):
    monkeypatch.setenv("BUSHU_KEY", key.read_text().strip())
    assert bushu.load(encrypted).infer({"x": np.zeros((1, 6), np.float32)})["output"].shape == (1, 3)


def test_altered_ciphertext_is_refused_before_decryption_even_unverified(encrypted, key, tmp_path):
    """The bytes are hashed as they are read, so `verify=False` skips only the files not loaded."""
    pkg = shutil.copytree(encrypted, tmp_path / "p")
    flip_byte(pkg / "model.onnx", 40)
    with pytest.raises(IntegrityError, match="model.onnx: contents changed"):
        bushu.load(pkg, key=load_key(key), verify=False)


def test_swapped_or_altered_ciphertext_fails_authentication(encrypted, key):
    manifest = read_manifest(encrypted)
    stored = (encrypted / "model.onnx").read_bytes()
    altered = stored[:40] + bytes([stored[40] ^ 1]) + stored[41:]
    with pytest.raises(DecryptionKeyError, match="decryption failed"):
        decrypt(manifest, "model.onnx", altered, load_key(key))
    weights = (encrypted / "source/weights.safetensors").read_bytes()
    with pytest.raises(DecryptionKeyError, match="encrypted for another path"):
        decrypt(manifest, "model.onnx", weights, load_key(key))


@pytest.fixture(scope="module")
def with_openvino_ir(tiny_package, tmp_path_factory):
    """The tiny package plus an OpenVINO IR variant (`variants/ov.xml` + `.bin`), so both runtimes
    that take decrypted bytes are checked."""
    ov = pytest.importorskip("openvino")
    from bushu.package.manifest import Variant
    from bushu.package.store import hash_files, write_manifest

    pkg = shutil.copytree(tiny_package, tmp_path_factory.mktemp("ov") / "tiny")
    (pkg / "variants").mkdir()
    ov.save_model(ov.convert_model(str(pkg / "model.onnx")), str(pkg / "variants" / "ov.xml"), compress_to_fp16=False)
    manifest = read_manifest(pkg)
    variants = {**manifest.variants, "ov-ir": Variant(file="variants/ov.xml", backend="openvino")}
    write_manifest(pkg, manifest.model_copy(update={"variants": variants, "files": hash_files(pkg)}))
    return pkg


@pytest.mark.parametrize("variant", ["onnx-fp32", "ov-ir"])
def test_loading_writes_no_plaintext_anywhere(with_openvino_ir, key, tmp_path, variant):
    """ONNX Runtime and OpenVINO get the decrypted bytes in memory; nothing plaintext reaches a disk.

    The load runs in a process whose HOME, temp dir, cache dirs and working directory are fresh
    folders, so every file it could write (runtime caches, compiled blobs, temp files) is among
    the files scanned for pieces of the plaintext."""
    import subprocess
    import sys

    encrypted = tmp_path / "enc"
    encrypt_package(with_openvino_ir, encrypted, load_key(key))
    plain = {rel: (with_openvino_ir / rel).read_bytes() for rel in read_manifest(encrypted).encryption.files}
    needles = {f"{rel}@{at}": data[at : at + 48] for rel, data in plain.items()
               for at in (len(data) // 2, max(0, len(data) - 48)) if len(data) >= 48}
    dirs = {name: tmp_path / name for name in ("home", "tmp", "cwd", "cache")}
    for folder in dirs.values():
        folder.mkdir()
    env = {**os.environ, "HOME": str(dirs["home"]), "TMPDIR": str(dirs["tmp"]), "TEMP": str(dirs["tmp"]),
           "XDG_CACHE_HOME": str(dirs["cache"]), "BUSHU_KEY": key.read_text().strip()}
    code = ("import numpy as np, bushu\n"
            f"m = bushu.load({str(encrypted)!r}, {variant!r})\n"
            "print(m.infer({'x': np.ones((2, 6), np.float32)})['output'].shape)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=dirs["cwd"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "(2, 3)" in done.stdout, done.stderr
    scanned = [p for root in [*dirs.values(), encrypted] for p in root.rglob("*") if p.is_file()]
    assert any(p.parent == encrypted for p in scanned)  # the scan does see files
    for path in scanned:
        data = path.read_bytes()
        for where, needle in needles.items():
            assert needle not in data, f"plaintext of {where} found in {path}"
    # the needles do find plaintext where it is: the unencrypted source package
    assert any(n in (with_openvino_ir / rel).read_bytes() for rel in plain for n in needles.values())


def test_encrypt_errors(encrypted, tiny_package, key, tmp_path, monkeypatch):
    monkeypatch.delenv("BUSHU_KEY", raising=False)
    run = CliRunner().invoke
    result = run(app, ["encrypt", str(encrypted), "-o", str(tmp_path / "twice"), "--key-file", str(key)])
    assert result.exit_code == 1 and "already encrypted" in result.output
    result = run(app, ["encrypt", str(tiny_package), "-o", str(tmp_path / "nokey")])
    assert result.exit_code == 1 and "no key" in result.output
    (tmp_path / "short.key").write_text("abcd")
    result = run(app, ["encrypt", str(tiny_package), "-o", str(tmp_path / "bad"), "--key-file", str(tmp_path / "short.key")])
    assert result.exit_code == 1 and "not a 256-bit key" in result.output
    assert not any(p.name in ("twice", "nokey", "bad") for p in tmp_path.iterdir())
