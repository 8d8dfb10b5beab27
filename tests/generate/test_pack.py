"""`bushu pack` of transformers language models: detected, packed as what they are, verified."""

import json

import pytest
from typer.testing import CliRunner

from bushu.cli import app
from bushu.errors import ExportError
from bushu.export.hf_generate import pack_hf_generator
from bushu.package import verify_package
from fixtures.generators import PACK_PROMPTS, tiny_marian


def test_a_gpt2_directory_is_packed_for_generation_with_its_cache_explicit(gpt2_package):
    manifest = verify_package(gpt2_package)
    assert manifest.task == "text-generation"
    names = [s.name for s in manifest.inputs]
    assert names == ["input_ids", "cache_lengths", "past_keys", "past_values"]
    assert [s.name for s in manifest.outputs] == ["logits", "present_keys", "present_values"]
    assert list(manifest.variants) == ["pytorch-fp32"]  # openvino-fp32 only on request (see hf_generate)
    for name, backend in (("pytorch-fp32", "pytorch"),):
        variant = manifest.variants[name]
        assert variant.backend == backend and variant.file == "model/model.safetensors"
        assert 0 < variant.max_rel_error["logits"] < 1e-4
        assert variant.metrics["greedy_prompts_equal"] == PACK_PROMPTS
    assert {"tokenizer/tokenizer.json", "generation.json", "model/config.json"} <= set(manifest.files)
    generation = json.loads((gpt2_package / "generation.json").read_text())
    assert generation["context"] == 512 and generation["eos_token_ids"] == [0]


def test_a_t5_directory_is_packed_as_an_encoder_decoder(t5_package):
    manifest = verify_package(t5_package)
    assert manifest.task == "text2text-generation"
    assert "source_ids" in [s.name for s in manifest.inputs]
    assert list(manifest.variants) == ["pytorch-fp32"]
    assert manifest.variants[manifest.default_variant].max_rel_error["logits"] < 1e-4


def test_a_marian_directory_is_packed_and_its_greedy_tokens_equal_generate(tmp_path):
    """OPUS-MT's architecture: post-norm, scaled embeddings, sinusoidal positions, a logits bias."""
    manifest = pack_hf_generator(tiny_marian(tmp_path / "src"), tmp_path / "marian", name="tiny-marian",
                                 prompts=PACK_PROMPTS, defaults={"context": 64})
    assert manifest.task == "text2text-generation" and manifest.provenance.exporter.endswith(".marian")
    variant = manifest.variants[manifest.default_variant]
    assert variant.max_rel_error["logits"] < 1e-4 and variant.metrics["greedy_prompts_equal"] == PACK_PROMPTS


def test_an_export_that_misses_the_tolerance_is_refused_naming_step_and_error(gpt2_dir, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(ExportError, match=r"logits at step 0 of prompt 0 .* relative error of [0-9.e-]+ \(tolerance 1e-12\)"):
        pack_hf_generator(gpt2_dir, out, name="x", prompts=1, tolerance=1e-12)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _config_dir(path, config) -> str:
    path.mkdir()
    config.save_pretrained(str(path))
    return str(path)


def test_an_unsupported_language_model_is_refused_naming_what_is_supported(tmp_path):
    from transformers import LlamaConfig

    source = _config_dir(tmp_path / "llama", LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                         intermediate_size=64, architectures=["LlamaForCausalLM"]))
    result = CliRunner().invoke(app, ["pack", source, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "model_type 'llama' (LlamaForCausalLM) cannot be generated with; supported: gpt2, marian, t5" in result.output
    assert not (tmp_path / "out").exists()


def test_a_model_with_a_task_head_is_not_silently_packed_as_an_encoder(tmp_path):
    from transformers import BertConfig

    source = _config_dir(tmp_path / "bert", BertConfig(architectures=["BertForSequenceClassification"]))
    result = CliRunner().invoke(app, ["pack", source, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "BertForSequenceClassification has a task head bushu does not pack" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_greedy_tokens_equal_generate_on_fifty_prompts(kind, gpt2_dir, t5_dir, tmp_path):
    manifest = pack_hf_generator(gpt2_dir if kind == "gpt2" else t5_dir, tmp_path / kind, name=kind, prompts=50,
                                 new_tokens=16, defaults={"context": 64} if kind == "t5" else None)
    assert manifest.variants[manifest.default_variant].metrics["greedy_prompts_equal"] == 50
