"""The playground in a real browser (headless Chromium) against a real server: upload a digit,
type a sentence, see the answers and their explanations, with no console errors."""

import pytest

from bushu.apps.vision.data import load_digits_split
from bushu.runtime.text import Tokenizer
from bushu.package.store import read_manifest
from bushu.serve.auth import Token, digest
from bushu.serve.settings import ServeSettings
from fixtures.browser import Page, browser, chromium_missing
from fixtures.explain import png
from fixtures.servers import ThreadServer

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")
pytest.importorskip("captum")
TIMEOUT_MS = 120_000  # explanations on a busy 2-core machine


@pytest.fixture(scope="module")
def server(vision_package, text_package):
    with ThreadServer([vision_package, text_package]) as running:
        yield running


@pytest.fixture(scope="module")
def chromium():
    with browser() as launched:
        yield launched


@pytest.fixture
def page(chromium):
    opened = Page(chromium)
    yield opened
    opened.close()


def test_uploading_a_digit_png_shows_the_right_label_and_its_overlay(server, page, tmp_path):
    split = load_digits_split()
    image, truth = split.test_images[3], str(split.test_labels[3])
    page.page.goto(server.url + "/")
    card = page.page.locator("#model-digits-cnn")
    card.locator("input.file").set_input_files(files=[{"name": "digit.png", "mimeType": "image/png", "buffer": png(image)}])
    label = card.locator(".answer .label")
    label.wait_for(timeout=TIMEOUT_MS)
    assert label.inner_text() == truth
    assert "ms round trip" in card.locator(".latency").inner_text()
    card.locator("img.overlay[src^='data:image/png;base64,']").wait_for(timeout=TIMEOUT_MS)
    assert f'why "{truth}"' in card.locator(".why").inner_text() and "convergence delta" in card.locator(".why").inner_text()
    page.screenshot("digit-upload")
    assert page.errors == []


def test_typing_a_sentence_shows_the_label_and_highlighted_tokens(server, page, text_package):
    sentence = "I hate this awful phone, it broke after a day."
    labels = read_manifest(text_package).labels
    page.page.goto(server.url + "/")
    card = page.page.locator("#model-sentiment-lstm")
    card.locator("textarea.text").fill(sentence)
    card.locator("button.run").click()
    label = card.locator(".answer .label")
    label.wait_for(timeout=TIMEOUT_MS)
    assert label.inner_text() in labels
    tokens = card.locator(".tokens .token")
    tokens.first.wait_for(timeout=TIMEOUT_MS)
    tokenizer = Tokenizer.from_manifest(read_manifest(text_package), text_package)
    assert tokens.all_inner_texts() == tokenizer.tokens(sentence)
    backgrounds = tokens.evaluate_all("spans => spans.map(s => getComputedStyle(s).backgroundColor)")
    assert any(b.startswith("rgba(") and not b.endswith(", 0)") for b in backgrounds), backgrounds
    page.screenshot("sentence")
    assert page.errors == []


def test_a_drawn_digit_gets_an_answer(server, page):
    page.page.goto(server.url + "/")
    card = page.page.locator("#model-digits-cnn")
    box = card.locator("canvas.draw").bounding_box()
    mouse = page.page.mouse
    mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
    mouse.down()
    mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.85, steps=12)
    mouse.up()
    card.locator(".answer .label").wait_for(timeout=TIMEOUT_MS)
    assert card.locator(".answer .label").inner_text() in [str(d) for d in range(10)]
    assert page.errors == []


def test_with_token_auth_the_page_asks_for_a_token_then_works(vision_package, page):
    settings = ServeSettings(tokens=(Token("reader", digest("s3cret"), frozenset({"infer"})),))
    with ThreadServer([vision_package], settings) as server:
        page.page.goto(server.url + "/")
        status = page.page.locator("#status", has_text="token")  # a locator: no eval, which the page's CSP forbids
        status.wait_for(timeout=TIMEOUT_MS)
        assert "needs a bearer token" in status.inner_text()
        page.page.fill("#token", "s3cret")
        page.page.click("#auth button")
        page.page.locator("#model-digits-cnn").wait_for(timeout=TIMEOUT_MS)
    # the one console error is the browser reporting the refused (401) model list
    assert len(page.errors) == 1 and "401" in page.errors[0], page.errors
