from pathlib import Path

import pytest

from fixtures.generators import PACK_PROMPTS, tiny_t5



@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory) -> Path:
    return tiny_t5(tmp_path_factory.mktemp("t5-src"))


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
