"""Summarisation: no offline data set supports training one here (README), so the path is a
checkpoint the user brings. BART is refused by name (bushu generates with GPT-2 and T5 only);
a T5 checkpoint packs, serves on the natural route, and summarises as `generate()` does."""

import httpx
import pytest
import torch

from bushu.errors import InvalidInput
from bushu.export.hf_generate import pack_hf_generator
from bushu.serve.settings import ServeSettings
from fixtures.generators import tiny_t5
from fixtures.servers import ThreadServer

ARTICLE = ("The council met on Tuesday to discuss the new bridge over the river. After a long debate the members "
           "agreed to fund the first stage of the work, which will begin in the spring and last two years.")


def test_a_user_brought_bart_checkpoint_is_refused_naming_what_is_supported(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)
    BartForConditionalGeneration(config).save_pretrained(str(tmp_path / "bart"))
    (tmp_path / "bart" / "tokenizer.json").write_text("{}")
    with pytest.raises(InvalidInput, match=r"'bart'.*supported: gpt2, marian, t5"):
        pack_hf_generator(tmp_path / "bart", tmp_path / "out", name="summariser")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the translator tests cover the T5 predict route in the default run
def test_a_user_brought_t5_summarises_on_the_predict_route_as_generate_does(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    source = tiny_t5(tmp_path / "t5")
    pack_hf_generator(source, tmp_path / "summariser", name="summariser", prompts=4, defaults={"context": 256})
    model = AutoModelForSeq2SeqLM.from_pretrained(str(source)).eval()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    ids = tokenizer.encode(ARTICLE).ids
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, num_beams=1)
    expected = tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
    with ThreadServer([tmp_path / "summariser"], ServeSettings(threads=1)) as server:
        response = httpx.post(f"{server.url}/v1/models/summariser/predict", json={"text": ARTICLE, "max_tokens": 16},
                              timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == expected
    assert response.json()["prompt_tokens"] == len(ids) > 30
