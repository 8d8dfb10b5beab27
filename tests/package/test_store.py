import shutil

import pytest

from bushu.errors import IntegrityError, NotFound, PackageError
from bushu.package import MANIFEST_NAME, read_manifest, scan_repository, staged_package, verify_package
from fixtures.files import flip_byte


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_fresh_package_verifies(tiny_package):
    manifest = verify_package(tiny_package)
    assert set(manifest.files) == {"model.onnx", "source/weights.safetensors"}


def test_flipping_any_byte_of_any_file_names_that_file(tiny_package, tmp_path):
    files = [MANIFEST_NAME, *read_manifest(tiny_package).files]
    for rel in files:
        size = (tiny_package / rel).stat().st_size
        for offset in (0, size // 2, size - 1):
            pkg = copy(tiny_package, tmp_path / f"{rel.replace('/', '_')}-{offset}")
            flip_byte(pkg / rel, offset)
            with pytest.raises(IntegrityError) as info:
                verify_package(pkg)
            assert info.value.files == [rel], (rel, offset, str(info.value))
            assert rel in str(info.value)


def test_a_missing_file_is_named(tiny_package, tmp_path):
    pkg = copy(tiny_package, tmp_path / "p")
    (pkg / "model.onnx").unlink()
    with pytest.raises(IntegrityError, match="model.onnx: missing"):
        verify_package(pkg)


def test_not_a_package(tmp_path):
    with pytest.raises(NotFound, match="bushu.json is missing"):
        read_manifest(tmp_path)
    with pytest.raises(NotFound, match="no such package"):
        read_manifest(tmp_path / "absent")


def test_staging_leaves_nothing_behind_on_error(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_package(target) as staging:
            (staging / "model.onnx").write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_staging_refuses_to_overwrite_without_force(tiny_package, tmp_path):
    pkg = copy(tiny_package, tmp_path / "p")
    with pytest.raises(PackageError, match="--force"):
        with staged_package(pkg):
            pass
    verify_package(pkg)  # untouched


def test_repository_layout_is_scanned(tiny_package, tmp_path):
    copy(tiny_package, tmp_path / "repo" / "tiny" / "1")
    copy(tiny_package, tmp_path / "repo" / "tiny" / "2")
    (tmp_path / "repo" / "notes").mkdir()
    found = scan_repository(tmp_path / "repo")
    assert sorted(found) == [("tiny", "1"), ("tiny", "2")]
    assert scan_repository(tiny_package) == {("tiny", "1"): tiny_package}
