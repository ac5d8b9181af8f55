"""The wizard a stranger finishes without help, in a real browser: the Adapter tab opens in plain words
with the rest under Advanced, its state survives a reload (mid-setup and mid-training), a failed upload
leaves nothing of the previous data behind and says why in words, the training chart shows its first
point with whole-number steps, and the parameter count is one number.

Playwright drives Debian's Chromium against one in-process app in local mode; every test opens its own
browser context (its own localStorage, so its own saved wizard). Screenshots go to
test-artifacts/browser/wizard-*.png.
"""

import re
import time
from functools import partial

import pandas as pd
import pytest
import requests
from browser_helpers import ARTIFACTS, free_port, launch_chromium, needs_chromium
from helpers import wait_for as wait
from studio_fixtures import publish_random

from adapter_core import AdapterConfig
from adapter_core.engine.train import TrainConfig
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = [pytest.mark.slow, needs_chromium]  # the complete tier: Chromium
SAMPLE = "Support routing (classification, 480 rows)"
SAMPLE_FILE = "support_routing.csv"
ALL_ROWS = re.compile(r"480 of 480 rows used")
WIZARD_KEY = "adapter-studio-wizard"
TIMEOUT = 120_000  # ms; a loaded 2-core CI machine is slow to load models and start runs
# Pages wait on conditions, never fixed sleeps; a loaded machine may take this long to show them.
wait_for = partial(wait, timeout=TIMEOUT / 1000, every=0.2)
R16_PARAMS = "153,411"  # MiniLM, r=16, houlsby, 3 labels: 12 x (2*384*16 + 16 + 384) + 3 x 385


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("studio-wizard"), policy=Policy.local())
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/", studio
    stop_all(studio)
    demo.close()


@pytest.fixture(scope="module")
def browser(app):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=TIMEOUT)
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(app, browser):
    """A new visitor: a fresh browser context (empty localStorage) on the studio's first page."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(app[0])
    expect(page.get_by_role("button", name="Load model")).to_be_visible()
    yield page
    context.close()


# Helpers ----------------------------------------------------------------------------------------------
def stop_all(studio: Studio) -> None:
    for job in studio.jobs.jobs():
        if not job.finished.is_set():
            studio.jobs.stop(job.id)
    for job in studio.jobs.jobs():
        assert job.finished.wait(120), f"run {job.config.name} did not stop"


def panel(page):
    """The tab panel on show (Gradio keeps visited tabs in the page, hidden)."""
    return page.get_by_role("tabpanel")


def go(page, tab: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name=tab).click()
    expect(page.get_by_role("tab", selected=True)).to_have_text(tab)


def use_sample(page) -> None:
    from playwright.sync_api import expect

    go(page, "2 · Data")
    expect(page.get_by_label("Bundled sample")).to_have_value(SAMPLE)  # the default
    page.get_by_role("button", name="Use this sample").click()
    expect(panel(page).get_by_text(ALL_ROWS)).to_be_visible()
    expect(page.get_by_label("Data file")).to_have_value(SAMPLE_FILE)


def upload_box(page):
    """The Data tab's input for the training data (the out-of-scope examples' box comes after it, and the
    preview table has one of its own)."""
    return panel(page).get_by_role("button", name="Click to upload or drop files").get_by_test_id("file-upload").first


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")


def set_adapter(page, name: str, bottleneck: int, max_length: int, epochs=None, batch=None) -> None:
    """Adapter tab: r, max length and name; with epochs and batch, unticks 'Size the run from the data'."""
    from playwright.sync_api import expect

    go(page, "3 · Adapter")
    set_number(page, "number input for Adapter size", bottleneck)
    set_number(page, "number input for Max length (tokens)", max_length)
    if epochs is not None or batch is not None:
        auto = page.get_by_label("Size the run from the data (recommended)")
        auto.uncheck()
        epochs_box = page.get_by_role("spinbutton", name="Epochs")
        expect(epochs_box).to_be_editable()
        if batch is not None:
            set_number(page, "number input for Batch size", batch)
        if epochs is not None:
            epochs_box.fill(str(epochs))
            epochs_box.press("Tab")
    page.get_by_label("Adapter name").fill(name)
    page.get_by_label("Adapter name").press("Tab")
    expect(panel(page).get_by_text(re.compile(r"trainable parameters = .*% of the base"))).to_be_visible()


def saved_wizard(page) -> str | None:
    return page.evaluate(f"() => localStorage.getItem('{WIZARD_KEY}')")


def settle(page, before: str | None, quiet: float = 1.5) -> None:
    """Wait until the wizard saved in the browser changed since `before` (each save is freshly encrypted)
    and then stayed put for `quiet` seconds: every save in flight has landed."""
    wait_for(lambda: saved_wizard(page) not in (None, before), what="the wizard to be saved in the browser")
    last, since = saved_wizard(page), time.time()
    deadline = time.time() + 30
    while time.time() - since < quiet and time.time() < deadline:
        time.sleep(0.1)
        now = saved_wizard(page)
        if now != last:
            last, since = now, time.time()


def run_summary(page):
    """The Train tab's 'Will train' (or 'Load a data file', or 'Sizing the run') paragraph block."""
    return (
        panel(page)
        .get_by_test_id("markdown")
        .filter(has_text=re.compile(r"Will train|Load a data file|Sizing the run"))
        .first
    )


def status_line(page, name: str):
    """The Train tab's progress line of run `name`."""
    return panel(page).locator("[data-testid=markdown] p").filter(has_text=re.compile(rf"^{re.escape(name)}: "))


def job_named(studio: Studio, name: str):
    return wait_for(lambda: next((j for j in studio.jobs.jobs() if j.config.name == name), None), what=name)


def chart(page) -> dict | None:
    """The Train tab's training curve as plotly holds it: first trace, x axis and annotations."""
    plot = panel(page).locator(".js-plotly-plot").first
    if not plot.count():
        return None
    return plot.evaluate(
        """p => p.data ? {
            mode: p.data[0] ? p.data[0].mode : null,
            x: p.data[0] ? Array.from(p.data[0].x || []) : [],
            title: p.layout.title && p.layout.title.text,
            dtick: p.layout.xaxis.dtick,
            ticks: Array.from(p.querySelectorAll('.xtick text')).map(t => t.textContent),
            notes: (p.layout.annotations || []).map(a => a.text),
        } : null"""
    )


def error_badges(page):
    """Gradio's red 'Error' status badges (and error toasts) on show."""
    return page.get_by_text("Error", exact=True).filter(visible=True)


# Tests ------------------------------------------------------------------------------------------------
def first_screen_in_plain_words(page) -> None:
    """The Adapter tab opens on the preset, the adapter's size in words (r beside them) and its name; where
    it sits, its activation and scaling, the seed, early stopping and the tracker wait in a closed
    Advanced accordion, each with a plain label and a line of help. Sets the seed there to 7."""
    from playwright.sync_api import expect

    go(page, "3 · Adapter")
    expect(page.get_by_role("radio", name="Balanced (r=64)")).to_be_checked()
    expect(page.get_by_label("number input for Adapter size")).to_have_value("64")
    expect(panel(page).get_by_text("Medium adapter, r = 64.")).to_be_visible()
    expect(page.get_by_label("Adapter name")).to_be_visible()
    moved = ["Where the adapter sits", "Activation function", "Output scaling", "Random seed"]
    moved += ["Stop early after N evaluations without progress", "Experiment tracker"]
    for label in moved:
        expect(panel(page).get_by_text(label, exact=True)).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "wizard-0-adapter-first-screen.png", full_page=True)
    panel(page).get_by_text("Advanced adapter options").click()
    for label in moved:
        expect(panel(page).get_by_text(label, exact=True)).to_be_visible()
    expect(
        panel(page).get_by_text(re.compile(r"^Where the adapter sits in each layer: after attention"))
    ).to_be_visible()
    page.get_by_label("Where the adapter sits").click()
    expect(page.get_by_role("option", name="After feed-forward only (Pfeiffer)")).to_be_visible()
    page.keyboard.press("Escape")
    seed = page.get_by_role("spinbutton", name="Random seed")
    seed.fill("7")
    seed.press("Tab")


def test_reload_mid_setup_restores_the_whole_wizard(page):
    from playwright.sync_api import expect

    started = time.perf_counter()
    use_sample(page)
    first_screen_in_plain_words(page)
    set_adapter(page, "restored-name", bottleneck=24, max_length=48, epochs=3, batch=16)
    expect(panel(page).get_by_text("Small adapter, r = 24.")).to_be_visible()  # the words follow r
    expect(panel(page).get_by_text("227,235")).to_be_visible()  # the estimate for r=24 and 3 labels
    before = saved_wizard(page)
    go(page, "4 · Train")
    expect(run_summary(page)).to_contain_text(f"Will train: {SAMPLE_FILE} (480 rows")
    settle(page, before)  # on a busy machine the Train tab's save may land late: after the Adapter tab's
    before = saved_wizard(page)
    go(page, "3 · Adapter")  # the last step before the reload: the tab itself is part of the wizard
    settle(page, before)
    page.screenshot(path=ARTIFACTS / "wizard-1-before-reload.png", full_page=True)

    page.reload()
    expect(page.get_by_role("tab", selected=True)).to_have_text("3 · Adapter")
    expect(page.get_by_label("number input for Adapter size")).to_have_value("24")
    expect(panel(page).get_by_text("Small adapter, r = 24.")).to_be_visible()
    expect(page.get_by_label("number input for Max length (tokens)")).to_have_value("48")
    expect(page.get_by_label("number input for Batch size")).to_have_value("16")
    expect(page.get_by_label("Adapter name")).to_have_value("restored-name")
    panel(page).get_by_text("Advanced adapter options").click()  # closed again after the reload
    expect(page.get_by_role("spinbutton", name="Random seed")).to_have_value("7")  # restored from Advanced
    expect(page.get_by_label("Size the run from the data (recommended)")).not_to_be_checked()
    epochs = page.get_by_role("spinbutton", name="Epochs")
    expect(epochs).to_have_value("3")
    expect(epochs).to_be_editable()  # unticked 'size from the data' leaves the manual settings usable
    expect(panel(page).get_by_text("227,235")).to_be_visible()  # the estimate follows the restored r and labels
    page.screenshot(path=ARTIFACTS / "wizard-2-after-reload.png", full_page=True)

    go(page, "2 · Data")
    expect(page.get_by_label("Data file")).to_have_value(SAMPLE_FILE)
    expect(panel(page).get_by_text(ALL_ROWS)).to_be_visible()
    expect(panel(page).get_by_text(re.compile(r"longer than max length 48"))).to_be_visible()  # re-read at 48
    go(page, "4 · Train")
    expect(run_summary(page)).to_contain_text(f"Will train: {SAMPLE_FILE} (480 rows, classification, 3 labels)")
    expect(run_summary(page)).to_contain_text("r=24")
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    go(page, "1 · Model")  # the restored base is described, as Load model showed it
    expect(panel(page).get_by_text(re.compile(r"minilm loaded: .*parameters"))).to_be_visible()
    expect(panel(page).get_by_text("Pick a model and press")).to_have_count(0)
    assert not error_badges(page).count()
    print(f"\nreload mid-setup: {time.perf_counter() - started:.1f} s")


def test_reload_mid_training_reattaches_on_the_train_tab(app, page):
    from playwright.sync_api import expect

    _, studio = app
    started = time.perf_counter()
    name = "reload-mid-run"
    use_sample(page)
    set_adapter(page, name, bottleneck=8, max_length=32, epochs=3, batch=8)  # 162 steps: well over 10 s
    go(page, "4 · Train")
    page.get_by_role("button", name="Start training").click()
    job = job_named(studio, name)
    try:
        expect(status_line(page, name)).to_contain_text(re.compile(rf"^{name}: training"))
        before = saved_wizard(page)
        go(page, "3 · Adapter")  # saved as the current tab; a running run still lands the reload on Train
        settle(page, before)
        assert not job.finished.is_set(), "the run ended before the reload; it must still be training"

        page.reload()
        expect(page.get_by_role("tab", selected=True)).to_have_text("4 · Train")
        line = status_line(page, name)
        expect(line).to_contain_text(re.compile(rf"^{name}: training"))
        expect(line).to_contain_text(re.compile(r"step \d+/162"))
        assert not job.finished.is_set(), "the run ended before the reloaded page showed it"
        page.screenshot(path=ARTIFACTS / "wizard-3-reloaded-mid-run.png")
        go(page, "3 · Adapter")
        expect(page.get_by_label("number input for Adapter size")).to_have_value("8")
        expect(page.get_by_label("number input for Max length (tokens)")).to_have_value("32")
        expect(page.get_by_label("number input for Batch size")).to_have_value("8")
        expect(page.get_by_role("spinbutton", name="Epochs")).to_have_value("3")
        expect(page.get_by_label("Adapter name")).to_have_value(name)
        go(page, "2 · Data")
        expect(page.get_by_label("Data file")).to_have_value(SAMPLE_FILE)
    finally:
        studio.jobs.stop(job.id)
        assert job.finished.wait(120), "the run did not stop"
    print(f"\nreload mid-training: {time.perf_counter() - started:.1f} s")


def test_failed_upload_after_a_good_one_clears_the_data_and_says_why(app, page, tmp_path):
    from playwright.sync_api import expect

    url, studio = app
    started = time.perf_counter()
    one_column = tmp_path / "no_rows.csv"  # a header and nothing else: unreadable as training data
    one_column.write_text("text,label\n", encoding="utf-8")
    good = tmp_path / "good_subset.csv"
    pd.read_csv(SAMPLES_DIR / SAMPLE_FILE).head(60).to_csv(good, index=False)

    use_sample(page)
    upload_box(page).set_input_files(one_column)
    reason = panel(page).get_by_test_id("markdown").filter(has_text="Could not load")
    expect(reason).to_contain_text("Could not load no_rows.csv:")
    expect(reason).to_contain_text("no rows of data")
    expect(page.get_by_label("Data file")).to_have_value("")
    expect(panel(page).get_by_text(ALL_ROWS)).to_have_count(0)
    expect(panel(page).get_by_text("Preview (first 20 rows)")).to_be_hidden()
    assert not error_badges(page).count(), "a failed load shows Gradio's Error badge instead of words"
    expect(page.get_by_test_id("toast-body").filter(has_text="Error")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "wizard-4-failed-upload.png", full_page=True)

    go(page, "4 · Train")
    expect(run_summary(page)).to_contain_text("Load a data file")
    start = page.get_by_role("button", name="Start training")
    expect(start).to_be_disabled()
    jobs_before = [j.id for j in studio.jobs.jobs()]
    # The Train tab's timer ticks send their own requests: count only those of Start's event.
    dependencies = requests.get(f"{url}config", timeout=30).json()["dependencies"]
    start_fn = next(d["id"] for d in dependencies if d.get("api_name") == "start_training")
    sent = []
    page.on(
        "request", lambda r: sent.append((r.post_data_json or {}).get("fn_index")) if "/queue/join" in r.url else None
    )
    start.click(force=True)  # a disabled button: the browser sends nothing
    # Let the page run whatever the click queued (a frame, then a task) before counting what it sent.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
    assert start_fn not in sent, "a disabled Start sent its event"
    assert [j.id for j in studio.jobs.jobs()] == jobs_before, "Start queued a run with no data loaded"

    use_sample(page)
    expect(panel(page).get_by_text("Click to Upload").first).to_be_visible()  # the training data's box is empty again
    assert not error_badges(page).count()
    go(page, "4 · Train")
    # Never "Load a data file" once one is loaded: while its run is sized, the summary says so.
    shown = run_summary(page).inner_text()
    assert "Load a data file" not in shown and ("Sizing the run" in shown or "Will train" in shown), shown
    expect(run_summary(page)).to_contain_text(f"Will train: {SAMPLE_FILE}")
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    # ...and the upload box takes a good file after the bad one.
    go(page, "2 · Data")
    upload_box(page).set_input_files(good)
    expect(panel(page).get_by_text(re.compile(r"good_subset\.csv: 60 of 60 rows used"))).to_be_visible()
    expect(page.get_by_label("Data file")).to_have_value("good_subset.csv")
    expect(panel(page).get_by_test_id("markdown").filter(has_text="Could not load")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "wizard-5-good-upload-after-bad.png", full_page=True)
    go(page, "4 · Train")
    expect(run_summary(page)).to_contain_text("Will train: good_subset.csv (60 rows")
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    print(f"\nfailed upload: {time.perf_counter() - started:.1f} s")


def test_chart_shows_a_phase_then_its_first_point_on_whole_steps(app, page):
    from playwright.sync_api import expect

    _, studio = app
    started = time.perf_counter()
    name = "first-point"
    use_sample(page)
    # 2 steps (27 a epoch at batch 16, 0.1 epochs): plotly's own ticks would be 0, 0.5, 1, 1.5, 2.
    set_adapter(page, name, bottleneck=8, max_length=32, epochs=0.1, batch=16)
    # A run already training holds the trainer, so the visitor's run waits: its phase shows for sure. It
    # starts once the page has settled (a page that opens while a run trains re-attaches to that run, and
    # Start then waits for it to end).
    data = str(SAMPLES_DIR / SAMPLE_FILE)
    settings = dict(adapter=AdapterConfig(bottleneck=4), epochs=4.0, lr=2e-3, batch_size=8, max_length=32)
    blocker, _ = studio.submit(TrainConfig("minilm", data, name="blocker", **settings))
    try:
        go(page, "4 · Train")
        expect(run_summary(page)).to_contain_text("Run: 2 optimizer steps")
        page.get_by_role("button", name="Start training").click()
        job = job_named(studio, name)
        expect(status_line(page, name)).to_contain_text(re.compile(r"Waiting|Loading|tokenised"))
        early = wait_for(lambda: (c := chart(page)) and c["title"] == name and c, what="the run's chart")
        assert not [e for e in job.events if e["kind"] == "step"], "the run passed step 1 before the check"
        assert early["x"] == [], early
        assert any(re.search(r"Waiting|Loading|tokenised", n) for n in early["notes"]), early["notes"]
        page.screenshot(path=ARTIFACTS / "wizard-6-waiting.png")
    finally:
        studio.jobs.stop(blocker.id)
        assert blocker.finished.wait(120), "the blocker did not stop"

    try:
        first = wait_for(lambda: (c := chart(page)) and c["title"] == name and c["x"] and c, what="the first point")
        page.screenshot(path=ARTIFACTS / "wizard-7-first-point.png")
        assert len(first["x"]) >= 1 and "markers" in first["mode"], first  # a lone first point is drawn
        assert isinstance(first["dtick"], int) and first["dtick"] >= 1, first
        assert first["ticks"] and not any("." in t for t in first["ticks"]), first["ticks"]
        assert job.finished.wait(120), "the 2-step run did not finish"
        expect(status_line(page, name)).to_contain_text(re.compile(rf"^{name}: completed"))
        done = wait_for(lambda: (c := chart(page)) and len(c["x"]) == 2 and c, what="both points")
        assert "markers" in done["mode"] and not any("." in t for t in done["ticks"]), done
    finally:
        if not job.finished.is_set():
            studio.jobs.stop(job.id)
        assert job.finished.wait(120), "the run did not stop"
    print(f"\nfirst point: {time.perf_counter() - started:.1f} s; ticks {first['ticks']}")


def test_one_parameter_count_in_adapter_and_compare(app, browser):
    from playwright.sync_api import expect

    url, studio = app
    started = time.perf_counter()
    for name, seed in (("cmp-a", 1), ("cmp-b", 2)):
        publish_random(
            studio, "minilm", name, "classification", ["billing", "orders", "tech"], seed=seed, bottleneck=16
        )
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    try:
        page.goto(url)  # after publishing: the Compare picker lists both
        expect(page.get_by_role("button", name="Load model")).to_be_visible()
        use_sample(page)
        set_adapter(page, "count-check", bottleneck=16, max_length=64)
        expect(panel(page).get_by_text(re.compile(rf"{R16_PARAMS} trainable parameters"))).to_be_visible()
        go(page, "4 · Train")
        expect(run_summary(page)).to_contain_text(f"{R16_PARAMS} trainable parameters")

        go(page, "6 · Compare")
        picker = page.get_by_label("Adapters (2 to 4)")
        for name in ("cmp-a", "cmp-b"):
            picker.click()
            page.get_by_role("option", name=name).click()
        page.keyboard.press("Escape")
        table = panel(page).get_by_role("grid").filter(has_text="trainable params").first
        expect(table).to_contain_text("cmp-b")
        headers = [t.strip() for t in table.get_by_role("columnheader").all_inner_texts()]
        column = next(i for i, t in enumerate(headers) if t.startswith("trainable params"))
        rows = table.get_by_role("row").filter(has=page.get_by_role("gridcell"))
        cells = {}
        for i in range(rows.count()):
            row = rows.nth(i).get_by_role("gridcell")
            cells[row.nth(0).inner_text().strip()] = row.nth(column).inner_text().strip()
        assert cells == {"cmp-a": R16_PARAMS, "cmp-b": R16_PARAMS}, (headers, cells)
        page.screenshot(path=ARTIFACTS / "wizard-8-compare-params.png", full_page=True)
    finally:
        context.close()
    print(f"\none parameter count: {time.perf_counter() - started:.1f} s")


def test_out_of_scope_examples_upload_beside_the_data_and_reach_the_summary(app, page, tmp_path):
    """The Data tab's second upload: the router's out-of-scope examples, counted when attached, named in the
    summary of what Start trains, and dropped when other data is loaded."""
    from playwright.sync_api import expect

    oos = tmp_path / "not_ours.csv"
    oos.write_text("text\n" + "".join(f"Can you book me a table for {n}?\n" for n in range(2, 9)))
    use_sample(page)
    boxes = panel(page).get_by_role("button", name="Click to upload or drop files").get_by_test_id("file-upload")
    boxes.nth(1).set_input_files(oos)
    expect(panel(page).get_by_text(re.compile(r"not_ours\.csv: 7 out-of-scope messages"))).to_be_visible()
    go(page, "4 · Train")
    expect(run_summary(page)).to_contain_text("Out-of-scope examples: not_ours.csv picks the router's")
    page.screenshot(path=ARTIFACTS / "wizard-6-out-of-scope-examples.png", full_page=True)
    use_sample(page)  # the data again: the examples were the last data's
    go(page, "4 · Train")
    expect(run_summary(page)).to_contain_text("Will train")
    expect(run_summary(page)).not_to_contain_text("Out-of-scope examples")
