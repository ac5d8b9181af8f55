"""A new user's journey in a real browser: Playwright driving Debian's Chromium, headless, offline.

Screenshots of each step go to test-artifacts/browser/.
"""

import re
import time

import pytest
from browser_helpers import ARTIFACTS, launch_chromium, needs_chromium
from helpers import free_port

from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = [pytest.mark.slow, needs_chromium]  # the complete tier: Chromium


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    started = time.perf_counter()
    studio = Studio(tmp_path_factory.mktemp("studio-browser"))
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/", studio, started
    demo.close()


def points(page) -> int:
    """How many training-loss points the plotly chart draws right now."""
    return page.evaluate(
        "() => { const p = [...document.querySelectorAll('.js-plotly-plot')]"
        ".find(q => q.data && q.data[0] && q.data[0].name === 'train loss');"
        " return p ? p.data[0].x.length : 0; }"
    )


def test_new_user_trains_and_classifies_in_the_browser(app):
    from playwright.sync_api import expect, sync_playwright

    app_url, studio, started = app
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)  # a loaded CI machine is slow to load models and start runs
        page.goto(app_url)
        expect(page.get_by_role("button", name="Load model")).to_be_visible()
        print(f"\nlaunch to usable page: {time.perf_counter() - started:.1f} s")

        # 1. pick MiniLM
        page.get_by_role("button", name="Load model").click()
        expect(page.get_by_text(re.compile(r"minilm loaded"))).to_be_visible()
        page.screenshot(path=ARTIFACTS / "1-model.png")

        # 2. load the sample classification CSV
        page.get_by_role("tab", name="2 · Data").click()
        page.get_by_role("button", name="Use this sample").click()
        expect(page.get_by_text(re.compile(r"480 of 480 rows used"))).to_be_visible()
        page.screenshot(path=ARTIFACTS / "2-data.png", full_page=True)

        # 3. set a bottleneck
        page.get_by_role("tab", name="3 · Adapter").click()
        slider_box = page.get_by_label("number input for Adapter size")
        slider_box.fill("16")
        slider_box.press("Enter")
        page.get_by_label("Size the run from the data (recommended)").uncheck()  # set the epochs by hand
        epochs = page.get_by_role("spinbutton", name="Epochs")
        epochs.fill("3")
        epochs.press("Tab")
        page.get_by_label("Adapter name").fill("browser-router")
        expect(page.get_by_text(re.compile(r"trainable parameters = .*% of the base"))).to_be_visible()
        expect(page.get_by_text("153,411", exact=False)).to_be_visible()  # 12 x (2*384*16 + 16 + 384) + 3 x 385
        page.screenshot(path=ARTIFACTS / "3-adapter.png")

        # 4. train a short run, 5. watch the loss chart update while it runs
        page.get_by_role("tab", name="4 · Train").click()
        page.get_by_role("button", name="Start training").click()
        expect(page.get_by_text(re.compile(r"step \d+/\d+"))).to_be_visible()
        job = studio.jobs.running() or studio.jobs.jobs()[-1]
        first, lags = points(page), []
        deadline = time.time() + 120
        while len(lags) < 5 and time.time() < deadline and not job.finished.is_set():
            n = points(page)
            if n > first:  # a new point: how long after its step happened did it reach the screen?
                steps = [e for e in job.events if e["kind"] == "step"]
                lags.append(time.time() - steps[n - 1]["time"])
                first = n
            time.sleep(0.05)
        assert lags, "the loss chart did not update during training"
        print(f"step to chart delay: median {sorted(lags)[len(lags) // 2]:.2f} s over {len(lags)} updates")
        page.screenshot(path=ARTIFACTS / "4-training.png")
        expect(page.get_by_text(re.compile(r"Saved to the library as 'browser-router'"))).to_be_visible(timeout=300_000)
        page.screenshot(path=ARTIFACTS / "5-trained.png")

        # 6. classify a sentence with the new adapter
        page.get_by_role("tab", name="5 · Use").click()
        picker = page.get_by_label("Classification adapter")
        picker.click()
        page.get_by_role("option", name="browser-router").click()
        page.get_by_placeholder("Where is my parcel? It was due Monday.").fill("I was charged twice for the same order")
        page.get_by_role("button", name="Classify", exact=True).click()
        expect(page.get_by_test_id("label-output-value").or_(page.locator(".output-class"))).to_contain_text("billing")
        page.screenshot(path=ARTIFACTS / "6-classify.png")

        # 7. open Compare
        page.get_by_role("tab", name="6 · Compare").click()
        expect(page.get_by_role("button", name="Run side by side")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "7-compare.png")
        browser.close()
