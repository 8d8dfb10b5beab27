"""The playground's generation card in a real browser (headless Chromium): a prompt typed on the
page streams its tokens in, and what the page shows is what the route answers without streaming."""

import httpx
import pytest

from fixtures.browser import Page, browser, chromium_missing
from fixtures.servers import ThreadServer

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


def test_a_prompt_typed_on_the_page_streams_the_greedy_completion(gpt2_package):
    prompt = "hello world"
    with ThreadServer([gpt2_package]) as server, browser() as launched:
        whole = httpx.post(f"{server.url}/v1/models/tiny-gpt2/predict",
                           json={"text": prompt, "max_tokens": 12}, timeout=60).json()
        page = Page(launched)
        try:
            page.page.goto(server.url + "/")
            card = page.page.locator("#model-tiny-gpt2")
            card.locator("textarea.prompt").fill(prompt)
            card.locator("input.max").fill("12")
            card.locator("button.run").click()
            page.page.wait_for_selector("#model-tiny-gpt2[data-done='true']", timeout=60_000)
            shown = card.locator(".completion").text_content()
            stats = card.locator(".latency").text_content()
            page.screenshot("generation")
            assert page.errors == []
        finally:
            page.close()
    assert whole["completion_tokens"] > 0
    assert shown == whole["text"]  # streamed on the page == the whole answer (greedy)
    assert "first token" in stats and "events" in stats
