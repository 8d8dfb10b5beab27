import shutil

import pytest
from typer.testing import CliRunner

from bushu.cli import app
from bushu.errors import InvalidInput, NotFound
from bushu.package import MANIFEST_NAME, read_manifest
from bushu.package.signing import SIGNATURE_NAME, SignatureError, generate_keypair, sign_package, verify_signed_package
from fixtures.files import flip_byte


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    public = generate_keypair(root / "signing.key")
    other = generate_keypair(root / "other.key")
    return root / "signing.key", public, other


@pytest.fixture(scope="module")
def signed(tiny_package, keys, tmp_path_factory):
    pkg = shutil.copytree(tiny_package, tmp_path_factory.mktemp("signed") / "tiny")
    result = CliRunner().invoke(app, ["sign", str(pkg), "--key", str(keys[0])])
    assert result.exit_code == 0, result.output
    return pkg


def test_a_signed_package_verifies_with_its_key_and_wherever_it_is_copied(signed, keys, tmp_path):
    verify_signed_package(signed, keys[1])
    moved = shutil.copytree(signed, tmp_path / "repo" / "tiny" / "7")
    verify_signed_package(moved, keys[1])
    result = CliRunner().invoke(app, ["verify", str(signed), "--pubkey", str(keys[1])])
    assert result.exit_code == 0 and "signed by" in result.output


def test_flipping_a_byte_in_any_file_is_refused_naming_it(signed, keys, tmp_path):
    files = [MANIFEST_NAME, SIGNATURE_NAME, *read_manifest(signed).files]
    for rel in files:
        pkg = shutil.copytree(signed, tmp_path / rel.replace("/", "_"))
        flip_byte(pkg / rel, (pkg / rel).stat().st_size // 2)
        with pytest.raises(SignatureError) as info:
            verify_signed_package(pkg, keys[1])
        assert info.value.files == [rel], (rel, str(info.value))
        result = CliRunner().invoke(app, ["verify", str(pkg), "--pubkey", str(keys[1])])
        assert result.exit_code == 1 and rel in result.output


def test_a_re_digested_manifest_edit_is_still_refused(signed, keys, tmp_path):
    """Editing the manifest and fixing its own digest beats `bushu verify`, not the signature."""
    from bushu.package.store import write_manifest

    pkg = shutil.copytree(signed, tmp_path / "edited")
    edited = read_manifest(pkg).model_copy(update={"labels": ["x", "y", "z"]})
    write_manifest(pkg, edited)
    with pytest.raises(SignatureError, match=f"changed: {MANIFEST_NAME}"):
        verify_signed_package(pkg, keys[1])


def test_added_file_wrong_key_and_unsigned(signed, tiny_package, keys, tmp_path):
    pkg = shutil.copytree(signed, tmp_path / "extra")
    (pkg / "backdoor.onnx").write_bytes(b"x")
    with pytest.raises(SignatureError, match="backdoor.onnx"):
        verify_signed_package(pkg, keys[1])
    with pytest.raises(SignatureError, match="not a valid signature"):
        verify_signed_package(signed, keys[2])
    with pytest.raises(SignatureError, match="not signed"):
        verify_signed_package(tiny_package, keys[1])


def test_key_errors(signed, keys, tmp_path):
    with pytest.raises(InvalidInput, match="already exists"):
        generate_keypair(keys[0])
    with pytest.raises(NotFound, match="does not exist"):
        sign_package(signed, tmp_path / "absent.key")
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(InvalidInput, match="not a usable"):
        sign_package(signed, tmp_path / "junk.key")
    assert (signed / SIGNATURE_NAME).is_file()  # the old signature is untouched
    verify_signed_package(signed, keys[1])
    assert (keys[0].stat().st_mode & 0o777) == 0o600
