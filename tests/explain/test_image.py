"""Integrated gradients and saliency on the seed CNN, checked against what they promise."""

import numpy as np
import pytest
import torch

from bushu.apps.vision.data import load_digits_split
from bushu.errors import InvalidInput
from bushu.explain import ExplainOptions, explainer_for
from bushu.explain.image import blank_like
from bushu.package.store import read_manifest
from bushu.serve.predict import NaturalRequest
from fixtures.explain import png, reference_module

DIGITS = 8


@pytest.fixture(scope="module")
def explainer(vision_package):
    return explainer_for(vision_package, read_manifest(vision_package))


@pytest.fixture(scope="module")
def digits(explainer):
    split = load_digits_split()
    request = NaturalRequest([png(image) for image in split.test_images[:DIGITS]])
    return request, explainer.predictor.tensors(request)["image"], split.test_labels[:DIGITS]


@pytest.fixture(scope="module")
def integrated(explainer, digits):
    request, _, _ = digits
    return explainer.explain(request, [{}] * DIGITS, ExplainOptions())


def test_ig_attributions_sum_to_the_logit_gap_from_the_blank_image(vision_package, digits, integrated):
    """Completeness, checked on a module built apart from the explainer: Σ attributions ≈ f(x) − f(blank)."""
    _, images, _ = digits
    module = reference_module(vision_package)
    manifest = read_manifest(vision_package)
    labels = manifest.labels
    for image, explanation in zip(images, integrated):
        target = labels.index(explanation["target"])
        with torch.no_grad():
            gap = float(module(torch.from_numpy(image[None]))[0, target]
                        - module(torch.from_numpy(blank_like(image, manifest)[None]))[0, target])
        total = float(np.sum(explanation["attributions"]))
        assert abs(total - gap) < 1e-2, (total, gap)
        assert abs(explanation["convergence_delta"]) < 1e-2
        assert abs(gap) > 1  # a real gap, not 0 ≈ 0


def test_explanations_explain_the_right_answer(digits, integrated):
    _, _, truths = digits
    assert all(e["source_label"] == str(t) and e["target"] == str(t) and e["agrees"] for e, t in zip(integrated, truths))


def test_saliency_mass_falls_mostly_on_the_digits_pixels(explainer, digits):
    """With a blank baseline IG gives background pixels zero by construction, so the measurable
    check is on saliency, which has no baseline: |∂ logit / ∂ pixel| summed over the digit's
    (bright) pixels is most of the total, and well above their share of the area."""
    request, images, _ = digits
    explained = explainer.explain(request, [{}] * DIGITS, ExplainOptions(method="saliency"))
    masses, areas = [], []
    for image, explanation in zip(images, explained):
        assert "convergence_delta" not in explanation  # saliency has no completeness to report
        ink = image[0] - blank_like(image, explainer.manifest)[0] > 0.5
        magnitude = np.abs(np.array(explanation["attributions"]))
        masses.append(magnitude[ink].sum() / magnitude.sum())
        areas.append(ink.mean())
    masses, areas = np.array(masses), np.array(areas)
    assert masses.mean() > 0.6 and (masses > 0.5).all(), masses
    assert (masses > areas + 0.1).all(), (masses, areas)


def test_removing_the_top_ig_pixels_hurts_more_than_removing_random_ink(explainer, digits, integrated):
    """Faithfulness by deletion: blanking the 20% of ink pixels IG ranks highest lowers the logit
    more than blanking as many random ink pixels."""
    _, images, _ = digits
    rng = np.random.default_rng(0)
    wins = 0
    for image, explanation in zip(images, integrated):
        blank = blank_like(image, explainer.manifest)
        ink = (image[0] - blank[0] > 0.5).ravel()
        count = int(ink.sum() * 0.2)
        ranked = np.argsort(-np.array(explanation["attributions"]).ravel())[:count]
        random = rng.choice(np.flatnonzero(ink), count, replace=False)
        target = explainer.labels.index(explanation["target"])

        def logit_without(pixels):
            edited = image.reshape(3, -1).copy()
            edited[:, pixels] = blank.reshape(3, -1)[:, pixels]
            return explainer.logits(edited.reshape(image.shape))[target]

        wins += logit_without(ranked) < logit_without(random)
    assert wins >= DIGITS - 1


def test_the_overlay_is_a_png_of_the_input_scaled_up(integrated):
    import base64
    import io

    from PIL import Image

    picture = Image.open(io.BytesIO(base64.b64decode(integrated[0]["overlay_png"])))
    assert picture.format == "PNG" and picture.size == (256, 256)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    assert (pixels[..., 0] - pixels[..., 2] > 60).any()  # red where pixels pushed for the answer


def test_a_served_answer_that_differs_is_named(explainer, digits):
    request, _, truths = digits
    wrong = str((int(truths[0]) + 1) % 10)
    explanation = explainer.explain(NaturalRequest(request.items[:1]), [{"label": wrong}],
                                    ExplainOptions(method="saliency"))[0]
    assert explanation["agrees"] is False and explanation["target"] == wrong
    assert f"served variant answered {wrong!r}" in explanation["note"]


def test_an_unknown_target_is_refused(explainer, digits):
    request, _, _ = digits
    with pytest.raises(InvalidInput, match="not one of the model's labels"):
        explainer.explain(NaturalRequest(request.items[:1]), [{}], ExplainOptions(target="cat"))
