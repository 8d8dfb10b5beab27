"""The language model app: its Kneser–Ney baseline is nltk's formula, a tiny training run packs
and verifies, and the served completions are the trained module's own greedy ones."""

import math
import random

import httpx
import orjson
import pytest

from bushu.apps import lm
from bushu.apps.lm.ngram import KneserNeyTrigram, Unigram, padded, perplexity
from bushu.package import read_manifest
from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer

PROMPTS = ["I love this", "the worst service", "Today the weather", "@user thanks for", "why does my phone"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained():
    return lm.train(epochs=1, limit=300, test_limit=40, sizes={"width": 32, "layers": 1, "heads": 2})


@pytest.fixture(scope="module")
def lm_package(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "empythy-lm"
    lm.package(trained, out, verify_prompts=4)
    return out


@pytest.fixture(scope="module")
def server(lm_package):
    with ThreadServer([lm_package], ServeSettings(threads=1)) as running:
        yield running


def test_kneser_ney_is_nltks_formula():
    from nltk.lm import KneserNeyInterpolated
    from nltk.util import everygrams

    rng = random.Random(0)
    texts = [[rng.choice("abcdefg") for _ in range(rng.randint(1, 9))] for _ in range(60)]
    reference = KneserNeyInterpolated(3, discount=0.75)
    reference.fit([list(everygrams(padded(t), max_len=3)) for t in texts], [w for t in texts for w in padded(t)])
    ours = KneserNeyTrigram(texts, vocab_size=7, add_one=False)
    held_out = [[rng.choice("abcdefg") for _ in range(rng.randint(1, 9))] for _ in range(20)]
    for text in held_out:
        seq = padded(text)
        for a, b, w in zip(seq, seq[1:], seq[2:]):
            assert ours.probability(w, (a, b)) == pytest.approx(reference.score(w, [a, b]), rel=1e-12)
    # the add-one bottom keeps an unseen token finite (nltk: probability 0, infinite perplexity)
    smoothed = KneserNeyTrigram(texts, vocab_size=8)
    assert 0 < smoothed.probability("h", ("a", "b")) < smoothed.probability("a", ("a", "b"))
    assert reference.score("h", ["a", "b"]) == 0


def test_perplexities_are_per_token_of_the_same_tokens():
    texts = [[1, 2, 3], [1, 2], [3]]
    uni = Unigram(texts, vocab_size=4, eos=0)
    # add-one over 4 ids: counts 1:2, 2:2, 3:2, 0 (ends):3 → total 9 + 4
    expected = math.exp(-(math.log(3 / 13) * 3 + math.log(4 / 13) * 2) / 5)  # 3 tokens, 2 ends
    assert perplexity(uni, [[1, 2], [3]]) == pytest.approx(expected)
    kn = KneserNeyTrigram(texts, vocab_size=4)
    assert perplexity(kn, [[1, 2, 3]]) < perplexity(uni, [[1, 2, 3]])


def test_the_package_records_all_three_perplexities(trained, lm_package):
    manifest = read_manifest(lm_package)
    assert manifest.task == "text-generation"
    assert manifest.metrics["test_perplexity"] == pytest.approx(trained.perplexity)
    assert manifest.metrics["baseline_kneser_ney_trigram_perplexity"] == pytest.approx(trained.kneser_ney)
    # a real estimate on held-out tokens, each far below the uniform vocabulary's
    vocab = trained.tokenizer.get_vocab_size()
    assert 1 < trained.kneser_ney < trained.unigram < vocab
    assert 1 < trained.perplexity < vocab
    assert manifest.variants[manifest.default_variant].metrics["greedy_prompts_equal"] == 4


def test_a_byte_tokenizer_reads_one_token_per_byte():
    """The demo's tokenizer (`vocab_size=lm.BYTES`): no merges, so a perplexity per token is one per byte."""
    from bushu.apps.lm.data import build_tokenizer

    tokenizer = build_tokenizer(["the cat sat on the mat", "the cat sat"] * 20, lm.BYTES)
    assert tokenizer.get_vocab_size() == 257
    text = "Grüße @user 👍"
    assert len(tokenizer.encode(text, add_special_tokens=False).ids) == len(text.encode())
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids) == text


def test_bits_per_byte_count_the_held_out_texts_own_bytes(trained, lm_package):
    """The model reads BPE pieces (fewer tokens than bytes); bits per byte divide the same held-out
    log-likelihood by the bytes of the text, so models over other tokens compare."""
    assert trained.tokenizer.get_vocab_size() > lm.BYTES
    texts = trained.split.test_texts
    assert trained.test_bytes == sum(len(t.encode()) + 1 for t in texts)  # no held-out text is cut at 40
    assert len(texts) < trained.test_tokens < trained.test_bytes
    metrics = read_manifest(lm_package).metrics
    bits = trained.test_tokens * math.log2(trained.perplexity) / trained.test_bytes
    assert metrics["test_bits_per_byte"] == pytest.approx(bits)
    assert metrics["baseline_kneser_ney_trigram_bits_per_byte"] == pytest.approx(
        trained.test_tokens * math.log2(trained.kneser_ney) / trained.test_bytes)


def test_a_vocabulary_smaller_than_the_bytes_is_refused():
    from bushu.errors import InvalidInput

    with pytest.raises(InvalidInput, match="a vocabulary of 100: byte-level pieces need at least 257"):
        lm.train(epochs=1, limit=50, test_limit=10, vocab_size=100)


def test_the_strongest_baseline_reads_the_same_text_in_more_bpe_pieces(trained, lm_package):
    """Kneser–Ney trigrams over SUBWORD_VOCAB pieces: the same held-out text in at most as many
    tokens as the model's smaller vocabulary makes (its merges extend the smaller one's), compared
    with the rest in bits per byte."""
    key = f"baseline_kneser_ney_trigram_bpe{lm.SUBWORD_VOCAB}"
    metrics = read_manifest(lm_package).metrics
    assert metrics[f"{key}_perplexity_per_piece"] == pytest.approx(trained.subword_kneser_ney)
    assert len(trained.split.test_texts) < trained.subword_pieces <= trained.test_tokens
    expected = trained.subword_pieces * math.log2(trained.subword_kneser_ney) / trained.test_bytes
    assert metrics[f"{key}_bits_per_byte"] == pytest.approx(expected)
    assert 0 < expected < trained.bits_per_byte(trained.unigram)


def _greedy(trained, prompt: str, new_tokens: int) -> str:
    import torch

    ids = trained.tokenizer.encode(prompt).ids  # the start marker first, as the package's tokenizer does
    with torch.inference_mode():
        out = trained.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=0)
    return trained.tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True)


def test_served_completions_equal_the_trained_modules_greedy_ones(trained, server):
    response = httpx.post(f"{server.url}/v1/models/empythy-lm/predict", json={"texts": PROMPTS, "max_tokens": 12},
                          timeout=60)
    assert response.status_code == 200, response.text
    served = [p["text"] for p in response.json()["predictions"]]
    assert served == [_greedy(trained, p, 12) for p in PROMPTS]
    one = httpx.post(f"{server.url}/v1/models/empythy-lm/predict", json={"text": PROMPTS[0], "max_tokens": 12}).json()
    assert one["text"] == served[0] and one["finish_reason"] in ("stop", "length")
    assert one["prompt_tokens"] == len(trained.tokenizer.encode(PROMPTS[0]).ids)


def test_a_streamed_completion_is_the_same_text_token_by_token(trained, server):
    with httpx.stream("POST", f"{server.url}/v1/models/empythy-lm/predict",
                      json={"text": PROMPTS[1], "max_tokens": 10, "stream": True}, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [orjson.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["text"] for e in events) == _greedy(trained, PROMPTS[1], 10)
    assert events[-1]["completion_tokens"] == len(events) and events[-1]["finish_reason"] in ("stop", "length")


def test_the_openai_routes_complete_with_the_lm(trained, server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    completion = client.completions.create(model="empythy-lm", prompt=PROMPTS[2], max_tokens=8, temperature=0)
    assert completion.choices[0].text == _greedy(trained, PROMPTS[2], 8)


@pytest.mark.parametrize(("body", "names"), [
    ({"prompt": "hi"}, "'text'"),
    ({"text": ""}, "'text' is empty"),
    ({"text": 3}, "'text' must be a string"),
    ({"texts": ["ok", 5]}, "'texts[1]' must be a string"),
    ({"text": "hi", "max_tokens": 0}, "'max_tokens'"),
    ({"text": "hi", "beams": 4}, "beams"),
    ({"text": "hi", "stream": "yes"}, "'stream'"),
    ({"texts": ["a", "b"], "stream": True}, "'stream'"),
])
def test_bad_generation_requests_are_400_naming_the_field(server, body, names):
    response = httpx.post(f"{server.url}/v1/models/empythy-lm/predict", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert names in response.json()["error"]
