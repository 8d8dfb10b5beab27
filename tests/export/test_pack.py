import pytest
import torch

import bushu
from bushu.errors import InvalidInput
from bushu.export import pack_module, parse_input_spec
from bushu.package import read_manifest
from bushu.package.store import verify_package
from fixtures.files import flip_byte
from fixtures.tiny import TinyMLP


def test_extra_files_are_packaged_and_hashed(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "pkg"
    pack_module(TinyMLP(), [parse_input_spec("x:FP32:batch,6")], out, name="tiny",
                extra_files={"tokenizer/vocab.json": b'["<pad>", "<unk>"]'})
    assert (out / "tokenizer" / "vocab.json").read_bytes() == b'["<pad>", "<unk>"]'
    assert "tokenizer/vocab.json" in read_manifest(out).files
    bushu.load(out)
    flip_byte(out / "tokenizer" / "vocab.json", 2)
    with pytest.raises(Exception, match="tokenizer/vocab.json"):
        verify_package(out)


@pytest.mark.parametrize("path", ["../escape.txt", "model.onnx", "bushu.json", "/abs.txt"])
def test_extra_files_must_stay_inside_and_not_replace_package_files(tmp_path, path):
    with pytest.raises(InvalidInput, match="extra file"):
        pack_module(TinyMLP(), [parse_input_spec("x:FP32:batch,6")], tmp_path / "pkg", name="tiny",
                    extra_files={path: b"x"})
    assert not (tmp_path / "pkg").exists()
