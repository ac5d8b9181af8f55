"""Experiments in a real browser: a short classification run ends and its confusion matrix renders with the
label names, Compare's trade-off scatter draws one point per finished run, baselines included, Train →
Past runs shows the run's report again, and a second run continues the first one's adapter.

Playwright drives Debian's Chromium against one in-process app in local mode. Screenshots go to
test-artifacts/browser/experiments-*.png.
"""

import re
import time
from functools import partial

import pytest
from browser_helpers import ARTIFACTS, launch_chromium, needs_chromium, served
from helpers import wait_for as wait

from studio.policy import Policy
from studio.service import Studio

pytestmark = [needs_chromium, pytest.mark.slow]
SAMPLE = "Support routing (classification, 480 rows)"
LABELS = ["billing", "orders", "tech"]
TIMEOUT = 120_000  # ms
# Pages wait on conditions, never fixed sleeps; a loaded machine may take this long to show them.
wait_for = partial(wait, timeout=TIMEOUT / 1000, every=0.2)


def baseline_run(studio: Studio, name: str, mode: str, trainable: int, accuracy: float, seconds: float) -> None:
    """A finished baseline in the run store, as an earlier process would have left it."""
    run = studio.jobs.store.create(name, {"name": name, "task": "classification", "mode": mode, "adapter": {}})
    run.append_event({"kind": "status", "status": "training", "info": {"trainable": trainable}})
    run.append_event({"kind": "step", "step": 1, "loss": 1.1})
    run.set_status("completed", metrics={"accuracy": accuracy, "val_loss": 0.9}, train_seconds=seconds, steps=1)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("studio-experiments"), policy=Policy.local())
    baseline_run(studio, "head-baseline", "head", 1_155, 0.45, 3.0)
    baseline_run(studio, "full-baseline", "full", 22_714_563, 0.93, 95.0)
    with served(studio) as url:
        yield url, studio


def plots(page) -> list[dict]:
    """Every plotly figure on the visible tab: its first trace's type, its x values and tick labels."""
    return (
        page.get_by_role("tabpanel")
        .locator(".js-plotly-plot")
        .evaluate_all(
            """ps => ps.filter(p => p.data && p.offsetParent !== null).map(p => ({
            types: p.data.map(t => t.type),
            x: p.data.map(t => Array.from(t.x || [])),
            y: p.data.map(t => Array.from(t.y || [])),
            xtype: p.layout.xaxis && p.layout.xaxis.type,
            xticks: Array.from(p.querySelectorAll('.xtick text')).map(t => t.textContent),
            yticks: Array.from(p.querySelectorAll('.ytick text')).map(t => t.textContent),
            cells: Array.from(p.querySelectorAll('.heatmaplayer text, text.textpoint')).map(t => t.textContent),
            points: p.querySelectorAll('.scatterlayer .points path').length,
        }))"""
        )
    )


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")


def test_a_run_ends_with_its_confusion_matrix_and_compare_plots_the_trade_off(app):
    from playwright.sync_api import expect, sync_playwright

    url, studio = app
    started = time.perf_counter()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=TIMEOUT)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        expect(page.get_by_role("button", name="Load model")).to_be_visible()

        page.get_by_role("tab", name="2 · Data").click()
        page.get_by_role("button", name="Use this sample").click()
        expect(page.get_by_text(re.compile(r"480 of 480 rows used"))).to_be_visible()
        page.get_by_role("tab", name="3 · Adapter").click()
        set_number(page, "number input for Adapter size", 8)
        set_number(page, "number input for Max length (tokens)", 32)
        page.get_by_label("Size the run from the data (recommended)").uncheck()
        set_number(page, "number input for Batch size", 16)
        epochs = page.get_by_role("spinbutton", name="Epochs")
        epochs.fill("0.1")  # 2 optimizer steps
        epochs.press("Tab")
        page.get_by_label("Adapter name").fill("quick")
        page.get_by_label("Adapter name").press("Tab")
        page.get_by_role("tab", name="4 · Train").click()
        expect(page.get_by_role("tabpanel").get_by_text("Run: 2 optimizer steps")).to_be_visible()
        page.get_by_role("button", name="Start training").click()

        job = wait_for(lambda: next((j for j in studio.jobs.jobs() if j.config.name == "quick"), None), what="job")
        assert job.finished.wait(120) and job.status == "completed", job.error
        heat = wait_for(
            lambda: next((p for p in plots(page) if p["types"] == ["heatmap"] and p["xticks"]), None),
            what="the confusion matrix",
        )
        page.screenshot(path=ARTIFACTS / "experiments-1-confusion.png", full_page=True)
        report = studio.run_report(job.id)
        order = [LABELS[i] for i in report["order"]]
        assert heat["x"][0] == order and heat["y"][0] == order and heat["xticks"] == order, heat
        assert sorted(heat["yticks"]) == sorted(LABELS), heat  # the true labels down the side
        counts = [str(report["confusion"][i][j]) for i in report["order"] for j in report["order"]]
        assert sorted(heat["cells"]) == sorted(counts), heat["cells"]  # a count in each cell
        per_class = page.get_by_role("tabpanel").get_by_role("grid").filter(has_text="precision").first
        for label in LABELS:
            expect(per_class).to_contain_text(label)

        page.get_by_role("tab", name="6 · Compare").click()
        scatter = wait_for(
            lambda: next((p for p in plots(page) if p["xtype"] == "log" and p["points"]), None),
            what="the trade-off scatter",
        )
        page.screenshot(path=ARTIFACTS / "experiments-2-tradeoff.png", full_page=True)
        trainable = sorted(x for xs in scatter["x"] for x in xs)
        assert len(trainable) == 3 and scatter["points"] == 3, scatter  # the run and the two baselines
        assert trainable[0] == 1_155 and trainable[-1] == 22_714_563
        quick = studio.jobs.store.get(job.id).status()
        assert sorted(y for ys in scatter["y"] for y in ys) == sorted([0.45, 0.93, quick["metrics"]["accuracy"]])

        page.get_by_role("tab", name="4 · Train").click()  # Past runs: the same report, from the run store
        page.get_by_text("Past runs (kept across restarts)").click()
        page.get_by_label("Run", exact=True).click()  # focus lists the visitor's runs
        page.get_by_role("option", name=job.id).click()
        page.get_by_role("button", name="Show", exact=True).click()
        expect(page.get_by_role("tabpanel").get_by_text(re.compile(rf"{job.id}.*completed"))).to_be_visible()
        wait_for(lambda: sum(p["types"] == ["heatmap"] for p in plots(page)) == 2, what="the past run's matrix")
        expect(page.get_by_role("button", name="Resume")).to_be_disabled()  # a completed run has nothing to resume
        page.screenshot(path=ARTIFACTS / "experiments-3-past-run.png", full_page=True)

        page.get_by_role("tab", name="3 · Adapter").click()  # continue the adapter on the same data
        page.get_by_text("Advanced adapter options").click()
        page.get_by_label("Continue training from").click()  # focus lists the visitor's adapters
        page.get_by_role("option", name="quick", exact=True).click()
        page.get_by_label("Adapter name").fill("quick-more")
        page.get_by_label("Adapter name").press("Tab")
        page.get_by_role("tab", name="4 · Train").click()
        expect(page.get_by_role("tabpanel").get_by_text("Continues your adapter 'quick' on this data")).to_be_visible()
        page.get_by_role("button", name="Start training").click()
        more = wait_for(
            lambda: next((j for j in studio.jobs.jobs() if j.config.name == "quick-more"), None), what="job"
        )
        assert more.finished.wait(120) and more.status == "completed", more.error
        assert more.config.init_from == str(studio.library.get("quick").path)
        assert "quick-more" in studio.library.names()
        browser.close()
    print(f"\nexperiments in the browser: {time.perf_counter() - started:.1f} s")
