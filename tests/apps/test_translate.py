"""The translator app: pycountry's name pairs split by name, the two baselines, a tiny training
run packed and verified, and served translations equal to the trained module's greedy ones."""

import httpx
import orjson
import pytest

from bushu.apps import translate
from bushu.apps.translate.baselines import WordDictionary, copy
from bushu.apps.translate.data import load_pairs, load_split
from bushu.package import read_manifest
from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained():
    return translate.train(epochs=1, limit=300, test_limit=12, sizes={"width": 32, "layers": 1, "heads": 2})


@pytest.fixture(scope="module")
def package(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("translate") / "names-en-de"
    translate.package(trained, out, verify_prompts=4)
    return out


@pytest.fixture(scope="module")
def server(package):
    with ThreadServer([package], ServeSettings(threads=1)) as running:
        yield running


def test_the_pairs_are_pycountrys_names_split_by_name():
    pairs = dict(load_pairs())
    assert len(pairs) > 14_000
    assert pairs["Germany"] == "Deutschland" and pairs["Swiss Franc"] == "Schweizer Franken"
    split = load_split()
    assert not {s for s, _ in split.train} & {s for s, _ in split.test}
    assert len(split.test) == len(pairs) // 10


def test_the_dictionary_maps_words_seen_in_training_and_copies_the_rest():
    dictionary = WordDictionary([("Swiss Franc", "Schweizer Franken"), ("Swiss Alps", "Schweizer Alpen"),
                                 ("Bank of Swiss", "Bank der Schweiz extra")])  # unequal lengths: not aligned
    assert dictionary.translate(["Swiss Franc", "Polish Franc", "Bank"]) == ["Schweizer Franken", "Polish Franken",
                                                                             "Bank"]
    assert copy(["a b"]) == ["a b"]


def test_the_tokens_are_bytes_so_any_name_encodes_and_decodes_unchanged():
    from bushu.apps.translate.model import build_tokenizer

    tokenizer = build_tokenizer()
    for name in ("Swiss Franc", "Holguín", "Côte d'Ivoire", "北京市", "Ṣaḥrāʼ"):
        ids = tokenizer.encode(name).ids
        assert len(ids) == len(name.encode()) + 1 and ids[-1] == 1  # each byte, then </s>
        assert tokenizer.decode(ids, skip_special_tokens=True) == name


def test_the_package_records_chrf_and_bleu_beside_both_baselines(trained, package):
    manifest = read_manifest(package)
    assert manifest.task == "text2text-generation" and manifest.provenance.exporter.endswith(".marian")
    for key in ("test_chrf", "test_bleu", "baseline_copy_chrf", "baseline_dictionary_chrf"):
        assert 0 <= manifest.metrics[key] <= 100
    assert manifest.metrics["test_chrf"] == pytest.approx(trained.model_scores.chrf)
    # copying is a strong baseline here: most names are written the same in German
    assert trained.copy_scores.chrf > 30


def test_served_translations_equal_the_trained_modules_greedy_ones(trained, server):
    sources = [s for s, _ in trained.split.test[:5]]
    response = httpx.post(f"{server.url}/v1/models/names-en-de/predict", json={"texts": sources}, timeout=120)
    assert response.status_code == 200, response.text
    assert [p["text"] for p in response.json()["predictions"]] == trained.outputs[:5]
    with httpx.stream("POST", f"{server.url}/v1/models/names-en-de/predict",
                      json={"text": sources[0], "stream": True}, timeout=60) as streamed:
        lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert "".join(orjson.loads(line[6:])["text"] for line in lines[:-1]) == trained.outputs[0]
