"""Package files as the runtime gets them: listed, inside the package, hashed as read, read once."""

import shutil

import pytest

from bushu.errors import IntegrityError, PackageError
from bushu.package import read_manifest
from bushu.package.files import PackageFiles
from bushu.runtime.text import Tokenizer


@pytest.fixture
def pkg(tiny_package, tmp_path):
    return shutil.copytree(tiny_package, tmp_path / "pkg")


def test_the_bytes_handed_on_are_the_bytes_hashed_once(pkg):
    files = PackageFiles(pkg, read_manifest(pkg))
    first = files.read("model.onnx")
    (pkg / "model.onnx").write_bytes(b"swapped after the read")
    assert files.read("model.onnx") == first  # the hashed bytes, not a second read of the file
    files.release()
    with pytest.raises(IntegrityError, match="model.onnx: contents changed"):
        files.read("model.onnx")


def test_only_listed_files_inside_the_package_are_read(pkg, tmp_path):
    files = PackageFiles(pkg, read_manifest(pkg))
    (pkg / "extra.json").write_text("{}")
    with pytest.raises(PackageError, match="'extra.json' is not a file listed in the package"):
        files.read("extra.json")
    with pytest.raises(PackageError, match="not a file listed"):
        files.read("../pkg/model.onnx")
    outside = tmp_path / "outside.onnx"
    shutil.move(pkg / "model.onnx", outside)
    (pkg / "model.onnx").symlink_to(outside)
    with pytest.raises(PackageError, match="resolves outside the package folder"):
        files.read("model.onnx")


def test_verify_unread_names_each_changed_file_it_did_not_read(pkg):
    files = PackageFiles(pkg, read_manifest(pkg))
    files.read("model.onnx")
    (pkg / "source" / "weights.safetensors").write_bytes(b"changed")
    with pytest.raises(IntegrityError, match="weights.safetensors: contents changed") as refused:
        files.verify_unread()
    assert refused.value.files == ["source/weights.safetensors"]


def test_a_tokenizer_reads_its_vocabulary_through_the_package(tmp_path):
    """A step's file comes from the hashed bytes too, when the caller hands a reader."""
    from bushu.package.manifest import Manifest, Provenance, TensorSpec, Variant
    from bushu.package.store import hash_files

    tokenizer = Tokenizer.build(["good day", "good night", "bad day"] * 2, min_count=1)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "vocab.json").write_bytes(tokenizer.vocab_bytes())
    (tmp_path / "p" / "model.onnx").write_bytes(b"graph")
    manifest = Manifest(
        name="t", framework="onnx", inputs=[TensorSpec(name="ids", datatype="INT64", shape=[-1, -1],
                                                       dims=["batch", "sequence"])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 3], dims=["batch", None])],
        preprocessing=[tokenizer.step("vocab.json")], variants={"v": Variant(file="model.onnx")},
        default_variant="v", provenance=Provenance(bushu_version="0"), files=hash_files(tmp_path / "p"))
    files = PackageFiles(tmp_path / "p", manifest)
    assert Tokenizer.from_manifest(manifest, files.read) == tokenizer
    (tmp_path / "p" / "vocab.json").write_text('["<pad>", "<unk>", "evil"]')
    with pytest.raises(IntegrityError, match="vocab.json: contents changed"):
        Tokenizer.from_manifest(manifest, PackageFiles(tmp_path / "p", manifest).read)
