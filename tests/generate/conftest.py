from pathlib import Path

import pytest

from fixtures.generators import tiny_gpt2, tiny_t5

#: Prompts verified against generate() when the test packages are made (50 in the slow test).
PACK_PROMPTS = 8


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return tiny_gpt2(tmp_path_factory.mktemp("gpt2-src"))


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory) -> Path:
    return tiny_t5(tmp_path_factory.mktemp("t5-src"))


@pytest.fixture(scope="session")
def gpt2_package(gpt2_dir, tmp_path_factory) -> Path:
    """Packed as a user does: `bushu pack DIR -o OUT`."""
    from typer.testing import CliRunner

    from bushu.cli import app

    out = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    result = CliRunner().invoke(app, ["pack", str(gpt2_dir), "-o", str(out), "--name", "tiny-gpt2",
                                      "--verify-prompts", str(PACK_PROMPTS)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def t5_package(t5_dir, tmp_path_factory) -> Path:
    from bushu.export.hf_generate import pack_hf_generator

    out = tmp_path_factory.mktemp("t5") / "tiny-t5"
    pack_hf_generator(t5_dir, out, name="tiny-t5", prompts=PACK_PROMPTS, defaults={"context": 64})
    return out


@pytest.fixture(scope="session")
def gpt2_source(gpt2_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(gpt2_dir), attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def t5_source(t5_dir):
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(str(t5_dir), attn_implementation="eager").eval()


@pytest.fixture(autouse=True, scope="module")
def _tiny_models_on_one_thread(one_torch_thread):
    yield
