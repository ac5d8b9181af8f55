"""A new user's instruction journey in Chromium with the "Quick look" preset and every sized setting auto:
SmolLM2, an upload of 80 pairs in a rigid house style, Start, then Chat. This is the issue case (the old
defaults made 9 steps on 80 pairs, and looped): the adapter must answer held-out prompts in the house
style, loaded onto a fresh base as a user would, without a loop, where the bare base has no such style.
Balanced's 100 steps on this file (16 of 16, against 14 for the old defaults) is measured side by side
by bench/defaults.py: four times the tokens, too long for the suite on 2 cores.

Slow: it trains SmolLM2 on the CPU (the preset's 2 minutes, more on a busy machine).
"""

import re

import pandas as pd
import pytest
from browser_helpers import ARTIFACTS, free_port, launch_chromium, needs_chromium
from helpers import ROOT

from adapter_core import RepetitionGuard, generate_batch, read_adapter_config
from adapter_core.engine.evaluation import load_with_base
from studio.policy import Policy
from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = [pytest.mark.slow, needs_chromium]
TRAIN_LOSS = "[...document.querySelectorAll('.js-plotly-plot')].find(q => q.data && q.data[0] && q.data[0].name === 'train loss')"
HOUSE = ROOT / "sample_data" / "house_style_sft.csv"
HOUSE_STYLE = re.compile(
    r"Case #\d{4} \| Item: (?P<item>[^|]+?) \| Action: (?P<action>[^|]+?) \| Signed: the Repair Desk"
)
HOUSE_ACTIONS = {
    "a replacement ships today at no cost",
    "the missing part is posted first class today",
    "a repair is booked and a courier collects it tomorrow",
    "a technician will call you within 24 hours",
}


def in_house_style(answer: str, prompt: str) -> bool:
    """The whole answer in the house format, with the item copied from the prompt and a known action."""
    m = HOUSE_STYLE.fullmatch(answer.strip())
    return bool(m) and m["item"] in prompt and m["action"] in HOUSE_ACTIONS


def test_quick_look_on_80_uploaded_pairs_answers_in_their_house_style(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    rows = pd.read_csv(HOUSE)
    train_rows, held_out = rows.iloc[:80], rows.iloc[80:]
    assert len(held_out) == 16 and not set(held_out["instruction"]) & set(train_rows["instruction"])
    data = tmp_path / "house.csv"
    train_rows.to_csv(data, index=False)
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

            page.get_by_label("Base model").click()
            page.get_by_role("option", name="smollm2-135m-instruct").click()
            page.get_by_role("button", name="Load model").click()
            expect(page.get_by_text(re.compile(r"smollm2-135m-instruct loaded"))).to_be_visible()
            page.get_by_role("tab", name="2 · Data").click()
            page.get_by_role("radio", name="instruction").click()
            upload = page.get_by_role("button", name="Click to upload or drop files").get_by_test_id("file-upload")
            upload.first.set_input_files(data)
            expect(page.get_by_text(re.compile(r"house\.csv: 80 of 80 rows used"))).to_be_visible()

            page.get_by_role("tab", name="3 · Adapter").click()
            page.get_by_role("radio", name="Quick look (r=16)").click()
            page.get_by_label("Adapter name").fill("house")

            page.get_by_role("tab", name="4 · Train").click()
            summary = page.get_by_text(re.compile(r"Will train: house\.csv"))
            expect(summary).to_contain_text("smollm2-135m-instruct")
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
            expect(page.get_by_text(re.compile(r"Saved to the library as 'house'"))).to_be_visible(timeout=900_000)
            job = studio.jobs.jobs()[-1]
            steps = job.latest("done")["step"]
            assert steps >= 50, f"Quick look made only {steps} optimizer steps"
            expect(
                page.get_by_text(re.compile(r"house: completed · 50 of 50 steps in \d\d:\d\d; saved"))
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
            page.get_by_role("option", name="house").click()
            prompt = held_out["instruction"].iloc[0]
            page.get_by_label("Message").fill(prompt)
            page.get_by_role("button", name="Send").click()
            answer = page.locator(".bot, [data-testid='bot']").last
            expect(answer).to_contain_text("Signed: the Repair Desk", timeout=300_000)
            text = answer.inner_text().strip()
            page.screenshot(path=ARTIFACTS / "preset-3-chat.png")
            assert in_house_style(text, prompt), text
            browser.close()
    finally:
        studio.jobs.close(timeout=60)
        demo.close()
    # The saved adapter, loaded onto a fresh base as a user would: the held-out prompts in the house style,
    # never a loop (the bare base may loop, and has no house style).
    folder = studio.library.get("house").path
    assert read_adapter_config(folder)["training"]["metrics"]["perplexity"] < 3.0
    loaded, name = load_with_base(folder)
    prompts = list(held_out["instruction"])
    guard = RepetitionGuard()
    answers = generate_batch(
        loaded.model, loaded.tokenizer, prompts + prompts[:2], [name] * 16 + [None] * 2, 48, guard=guard
    )
    answers, plain = answers[:16], answers[16:]
    assert not any(HOUSE_STYLE.search(a) or "Repair Desk" in a for a in plain), plain
    assert sum(in_house_style(a, p) for a, p in zip(answers, prompts, strict=True)) >= 14, answers
    assert not any(guard.fired[:16])
