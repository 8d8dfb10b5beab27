import base64
import os
import shutil
import tempfile
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


def test_loading_writes_no_plaintext_anywhere(encrypted, tiny_package, key, rng):
    """ONNX Runtime gets the decrypted bytes in memory; nothing plaintext reaches a disk."""
    plain = (tiny_package / "model.onnx").read_bytes()
    needle = plain[len(plain) // 2 : len(plain) // 2 + 48]
    weights = (tiny_package / "source/weights.safetensors").read_bytes()[-48:]
    started = set(Path(tempfile.gettempdir()).rglob("*"))
    model = bushu.load(encrypted, key=load_key(key))
    model.infer({"x": rng.standard_normal((2, 6)).astype(np.float32)})
    new = [p for p in set(Path(tempfile.gettempdir()).rglob("*")) - started if p.is_file()]
    for path in [*new, *(p for p in encrypted.rglob("*") if p.is_file())]:
        data = path.read_bytes()
        assert needle not in data and weights not in data, path


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
