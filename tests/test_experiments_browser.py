"""Experiments in a real browser: a short classification run ends and its confusion matrix renders with the
label names, Compare's trade-off scatter draws one point per finished run, baselines included, with every
name inside the plot, Train → Past runs shows the run's report again, and a second run continues the first
one's adapter. Then, with two classifiers and no department yet, Route shows its decision and which labels
fall back, and Compare keeps one colour per adapter and only test figures in its Test scores.

Playwright drives Debian's Chromium against one in-process app in local mode. Screenshots go to
test-artifacts/browser/experiments-*.png.
"""

import re
import time
from functools import partial

import pandas as pd
import pytest
from browser_helpers import ARTIFACTS, launch_chromium, needs_chromium, served
from helpers import wait_for as wait

from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
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
    # Long names at both ends of the log axis: centred on their points, they would run past the plot's edges.
    baseline_run(studio, "support_routing-head", "head", 1_155, 0.45, 3.0)
    baseline_run(studio, "support_routing-full", "full", 22_714_563, 0.93, 95.0)
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
            x: p.data.map(t => Array.from(t.x || []).filter(v => v !== null)),  // not the legend's markers
            y: p.data.map(t => Array.from(t.y || []).filter(v => v !== null)),
            xtype: p.layout.xaxis && p.layout.xaxis.type,
            xticks: Array.from(p.querySelectorAll('.xtick text')).map(t => t.textContent),
            yticks: Array.from(p.querySelectorAll('.ytick text')).map(t => t.textContent),
            cells: Array.from(p.querySelectorAll('.heatmaplayer text, text.textpoint')).map(t => t.textContent),
            points: p.querySelectorAll('.scatterlayer .points path').length,
        }))"""
        )
    )


def names_outside_the_plot(page) -> list[dict]:
    """The trade-off scatter's point names, each with whether its box lies inside the plot area (plotly
    cuts a name where it runs past)."""
    return (
        page.get_by_role("tabpanel")
        .locator(".js-plotly-plot")
        .evaluate_all(
            """ps => ps.filter(p => p.layout && p.layout.xaxis && p.layout.xaxis.type === 'log').flatMap(p => {
            const area = p.querySelector('rect.nsewdrag').getBoundingClientRect();
            return Array.from(p.querySelectorAll('.textpoint text')).map(t => {
                const box = t.getBoundingClientRect();
                return {name: t.textContent, left: box.left, right: box.right, top: box.top,
                        inside: box.left >= area.left - 1 && box.right <= area.right + 1 && box.top >= area.top - 1};
            });
        })"""
        )
    )


def chart_colours(page) -> list[dict[str, str]]:
    """For each chart on the visible tab: its lines' colours by trace name, its named points' by name."""
    return (
        page.get_by_role("tabpanel")
        .locator(".js-plotly-plot")
        .evaluate_all(
            """ps => ps.filter(p => p.data && p.offsetParent !== null).map(p => Object.fromEntries(p.data.flatMap(t =>
            t.mode === 'lines' ? [[t.name, t.line && t.line.color]] :
            Array.from(t.text || []).map((name, i) => [name, t.marker && [].concat(t.marker.color)[i]]))))"""
        )
    )


def headers(grid) -> list[str]:
    return [t.strip() for t in grid.get_by_role("columnheader").all_inner_texts()]


def route_explains_itself(page) -> None:
    """Two classifiers and no instruction adapter: Route still shows its decision and its label map."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="5 · Use").click()
    page.get_by_role("tab", name="Route").click()
    routed = page.get_by_role("grid").filter(has_text="answered by")
    expect(routed).to_be_visible()  # real headers before anything is routed, not "1 2 3"
    assert headers(routed)[:2] == ["message", "department"], headers(routed)
    page.get_by_label("Router (a classification adapter)").click()
    page.get_by_role("option", name="quick", exact=True).click()
    labels = page.get_by_role("grid").filter(has_text="department adapter")
    for label in LABELS:
        expect(labels).to_contain_text(label)
    expect(labels).to_contain_text("fallback: no answer yet")
    expect(page.get_by_text("No department adapter exists yet: quick still shows its decision")).to_be_visible()
    page.get_by_label("Customer message").fill("Where is my parcel? It was due Monday.")
    page.get_by_role("button", name="Route and answer", exact=True).click()
    decision = page.get_by_test_id("markdown").filter(has_text="Router quick chose")
    expect(decision).to_contain_text("no department adapter exists yet, so nothing answers")
    expect(decision).to_contain_text(re.compile(r"chose (billing|orders|tech) \(\d+\.\d% confident"))
    page.get_by_label(re.compile("Or many messages")).fill("Where is my parcel?\nI was charged twice.")
    page.get_by_role("button", name="Route and answer all").click()
    expect(routed).to_contain_text("fallback: none yet (no department adapter)")
    expect(page.get_by_test_id("toast-body")).to_have_count(0)  # said on the page, not in a toast
    page.screenshot(path=ARTIFACTS / "experiments-4-route.png", full_page=True)


def compare_explains_itself(page, studio: Studio, test_file) -> None:
    """Compare: one colour per adapter on every chart, and Test scores that hold only test figures."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="6 · Compare").click()
    picker = page.get_by_label("Adapters (2 to 4)")
    for name in ("quick", "quick-more"):
        picker.click()
        page.get_by_role("option", name=name, exact=True).click()
    page.keyboard.press("Escape")
    adapter_of = {j.id: j.config.name for j in studio.jobs.jobs()}  # Their loss curves name the runs
    drawn = lambda: [{adapter_of.get(k, k): c for k, c in chart.items()} for chart in chart_colours(page)]  # noqa: E731
    # The adapters' curves, their runs' curves and their points on the scatter, each chart with both.
    charts = wait_for(
        lambda: (c := drawn()) and sum({"quick", "quick-more"} <= chart.keys() for chart in c) >= 3 and c,
        what="both adapters on three charts",
    )
    seen: dict[str, set] = {}
    for chart in charts:
        for name, colour in chart.items():
            seen.setdefault(name, set()).add(colour)
    assert all(len(c) == 1 and None not in c for c in seen.values()), seen  # one colour per adapter everywhere
    assert seen["quick"] != seen["quick-more"], seen
    upload = page.get_by_role("button", name="Click to upload or drop files")  # the tables have inputs of their own
    page.get_by_role("tabpanel").locator(upload).get_by_test_id("file-upload").set_input_files(test_file)
    expect(page.get_by_role("tabpanel").get_by_text(test_file.name)).to_be_visible()  # uploaded
    page.get_by_role("button", name="Evaluate all on the test file").click()
    scores = page.get_by_role("grid", name=re.compile(r"^Test scores"))
    expect(scores).to_contain_text("quick-more")
    assert headers(scores) == ["adapter", "accuracy", "F1 averaged over labels", "rows"], headers(scores)  # no val_loss
    page.screenshot(path=ARTIFACTS / "experiments-5-compare.png", full_page=True)


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")


def test_a_run_ends_with_its_confusion_matrix_and_compare_plots_the_trade_off(app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, studio = app
    test_file = tmp_path / "test.csv"
    pd.read_csv(SAMPLES_DIR / "support_routing.csv").sample(12, random_state=0).to_csv(test_file, index=False)
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
        drawn = names_outside_the_plot(page)
        assert sorted(d["name"] for d in drawn) == ["quick", "support_routing-full", "support_routing-head"], drawn
        assert all(d["inside"] for d in drawn), drawn  # every name whole, inside the plot at 1,280 px

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
        explained = time.perf_counter()
        route_explains_itself(page)
        compare_explains_itself(page, studio, test_file)
        print(f"\nRoute and Compare explain themselves: {time.perf_counter() - explained:.1f} s")
        browser.close()
    print(f"\nexperiments in the browser: {time.perf_counter() - started:.1f} s")
