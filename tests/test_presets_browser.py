"""A new user's instruction journey in Chromium with the "Quick look" preset and every default: the
Orders sample, Start, then Chat. The adapter must already answer in the sample's house style.

Slow: it trains SmolLM2 on the CPU (the preset's 2 minutes, more on a busy machine).
"""

import re

import pytest
from browser_helpers import ARTIFACTS, free_port, launch_chromium, needs_chromium

from studio.policy import Policy
from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = [pytest.mark.slow, needs_chromium]
TRAIN_LOSS = "[...document.querySelectorAll('.js-plotly-plot')].find(q => q.data && q.data[0] && q.data[0].name === 'train loss')"
STYLE = re.compile(r"^Hello from the Orders Desk! Reference ORD-\d{5}\. .+ Happy shopping, The Orders Desk\.$", re.S)


def test_quick_look_on_the_orders_sample_answers_in_its_style(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    studio = Studio(tmp_path, policy=Policy.local())
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            page.goto(f"http://127.0.0.1:{port}/")

            page.get_by_role("tab", name="2 · Data").click()
            page.get_by_label("Bundled sample").click()
            page.get_by_role("option", name="Orders replies (instruction, 140 rows)").click()
            page.get_by_role("button", name="Use this sample").click()
            expect(page.get_by_text(re.compile(r"orders_sft\.csv: 140 of 140 rows used"))).to_be_visible()

            page.get_by_role("tab", name="3 · Adapter").click()
            page.get_by_role("radio", name="Quick look (r=16)").click()
            page.get_by_label("Adapter name").fill("quick-orders")

            page.get_by_role("tab", name="4 · Train").click()
            summary = page.get_by_text(re.compile(r"Will train: orders_sft\.csv"))
            expect(summary).to_contain_text("smollm2-135m-instruct")  # the instruction sample chose SmolLM2
            expect(summary).to_contain_text("r=16")
            # One estimate, sized to the preset's 2 minutes, said the same way as during the run.
            # The whole run (evaluations and end-of-run answers too), from the data's own token counts.
            expect(summary).to_contain_text(re.compile(r"batch 4, .*; about [123] min left\."))
            expect(summary).to_contain_text(re.compile(r"Memory: about .* at batch 4 and rows of up to \d+ tokens\."))
            expect(summary).not_to_contain_text("This run takes")  # no long-run warning for a Quick look
            page.screenshot(path=ARTIFACTS / "preset-1-summary.png")
            start = page.get_by_role("button", name="Start training")
            start.click()
            expect(start).to_be_disabled()  # a second click would queue the same run again
            # The instruction run's chart shows its very first point, as a marker, on whole-number steps.
            page.wait_for_function(f"() => ({TRAIN_LOSS}) && ({TRAIN_LOSS}).data[0].x.length >= 1", timeout=600_000)
            first = page.evaluate(f"() => {{ const p = {TRAIN_LOSS}; return [p.data[0].mode, p.layout.xaxis.dtick]; }}")
            assert "markers" in first[0] and first[1] == int(first[1]) >= 1, first
            expect(page.get_by_text(re.compile(r"Saved to the library as 'quick-orders'"))).to_be_visible(
                timeout=900_000
            )
            job = studio.jobs.jobs()[-1]
            steps = job.latest("done")["step"]
            assert steps >= 50, f"Quick look made only {steps} optimizer steps"
            expect(
                page.get_by_text(re.compile(r"quick-orders: completed · 50 of 50 steps in \d\d:\d\d; saved"))
            ).to_be_visible()
            expect(start).to_be_enabled()
            # The base's and the adapter's sample answers side by side, inside a 1,280-px window.
            table = page.get_by_role("grid", name=re.compile("Sample answers at the latest evaluation"))
            header = table.get_by_role("columnheader", name="adapter", exact=True)
            expect(header).to_be_visible()
            box = header.bounding_box()
            assert box and box["x"] + box["width"] <= 1280, box
            page.screenshot(path=ARTIFACTS / "preset-2-trained.png", full_page=True)

            page.get_by_role("tab", name="5 · Use").click()
            page.get_by_role("tab", name="Chat").click()
            page.get_by_label("Instruction adapter").click()
            page.get_by_role("option", name="quick-orders").click()
            page.get_by_label("Message").fill("Hi, my parcel from order #482913 never arrived. Can you help?")
            page.get_by_role("button", name="Send").click()
            answer = page.locator(".bot, [data-testid='bot']").last
            expect(answer).to_contain_text("The Orders Desk.", timeout=300_000)
            text = answer.inner_text().strip()
            page.screenshot(path=ARTIFACTS / "preset-3-chat.png")
            assert STYLE.match(text), text
            browser.close()
    finally:
        studio.jobs.close(timeout=60)
        demo.close()
