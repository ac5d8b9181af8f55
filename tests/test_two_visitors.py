"""Two anonymous visitors of one public studio, each in their own browser context (their own localStorage,
so their own identity): each trains, sees, re-attaches to and manages only their own work.

Playwright drives Debian's Chromium against one in-process app in public mode. Screenshots go to
test-artifacts/browser/visitor-a-*.png and visitor-b-*.png.
"""

import re
import time

import pytest
from browser_helpers import ARTIFACTS, launch_chromium, needs_chromium, served
from studio_fixtures import publish_random

from studio.policy import Policy
from studio.service import Studio

pytestmark = [pytest.mark.slow, needs_chromium]  # the complete tier: Chromium
STATUS = re.compile(r"^\S+: (queued|loading|training|stopping|completed|stopped|failed|cancelled)\b")
EXAMPLE = "example-router"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # Both visitors come from this machine's address: give each address the whole of every share; they train
    # as anonymous visitors, so the operator setting opens heavy work to them (isolation is what this tests).
    studio = Studio(
        tmp_path_factory.mktemp("studio-two-visitors"), policy=Policy(public=True, fair_share=1.0, anonymous_heavy=True)
    )
    publish_random(studio, "minilm", EXAMPLE, "classification", ["billing", "orders", "tech"])  # owner None: shared
    with served(studio) as url:
        yield url, studio


def status_line(page):
    """The Train tab's progress line of the visitor's current run."""
    return page.locator("[data-testid=markdown] p").filter(has_text=STATUS)


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")


def prepare_run(page, name: str, epochs: int, batch: int = 32, max_length: int = 32) -> None:
    """Data: the default classification sample; Adapter: r=8 and the given settings."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="2 · Data").click()
    page.get_by_role("button", name="Use this sample").click()
    expect(page.get_by_text(re.compile(r"480 of 480 rows used"))).to_be_visible()
    page.get_by_role("tab", name="3 · Adapter").click()
    set_number(page, "number input for Adapter size", 8)
    page.get_by_label("Size the run from the data (recommended)").uncheck()  # set batch and epochs by hand
    set_number(page, "number input for Batch size", batch)
    set_number(page, "number input for Max length (tokens)", max_length)
    epochs_box = page.get_by_role("spinbutton", name="Epochs")
    epochs_box.fill(str(epochs))
    epochs_box.press("Tab")
    page.get_by_label("Adapter name").fill(name)
    expect(page.get_by_text(re.compile(r"trainable parameters = .*% of the base"))).to_be_visible()


def start_run(page, name: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="4 · Train").click()
    page.get_by_role("button", name="Start training").click()
    expect(status_line(page)).to_contain_text(re.compile(rf"^{name}: "))


def library_names(page) -> list[str]:
    """The adapter column of the Library table, as the visitor sees it."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Library").click()
    table = page.get_by_role("grid", name="Adapters").filter(visible=True)
    expect(table).to_contain_text(EXAMPLE)  # the list has arrived (the shared example is always in it)
    rows = table.get_by_role("row").filter(has=page.get_by_role("gridcell"))
    return [rows.nth(i).get_by_role("gridcell").first.inner_text().strip() for i in range(rows.count())]


def picker_options(page, tab: str, label: str) -> list[str]:
    page.get_by_role("tab", name="5 · Use").click()
    page.get_by_role("tab", name=tab, exact=True).click()
    page.get_by_label(label).click()
    options = page.get_by_role("option")
    options.first.wait_for()
    texts = [t.replace("✓", "").strip() for t in options.all_inner_texts()]  # the chosen one is ticked
    page.keyboard.press("Escape")
    return texts


def job_named(studio: Studio, name: str):
    (job,) = [j for j in studio.jobs.jobs() if j.config.name == name]
    return job


def delete_from_library(page, name: str) -> None:
    page.get_by_role("tab", name="Library").click()
    pick = page.get_by_label("Adapter", exact=True)
    pick.fill(name)
    pick.press("Enter")
    page.get_by_role("button", name="Delete").click()


def expect_error_toast(page, message: str) -> None:
    from playwright.sync_api import expect

    toast = page.get_by_test_id("toast-body").filter(has=page.get_by_test_id("toast-text").filter(has_text=message))
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Error")
    expect(toast).to_have_css("opacity", "1")  # done flying in, for the screenshot


def test_two_visitors_see_and_manage_only_their_own_work(app):
    from playwright.sync_api import expect, sync_playwright

    url, studio = app
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        expect.set_options(timeout=120_000)  # a loaded 2-core CI machine is slow to load models and start runs
        pages = {}
        for who in ("a", "b"):
            context = browser.new_context(viewport={"width": 1280, "height": 1000})  # own localStorage
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            expect(page.get_by_role("button", name="Load model")).to_be_visible()
            expect(page.get_by_text("Public studio.")).to_be_visible()
            pages[who] = page
        alice, bob = pages["a"], pages["b"]

        # Each trains a short run through the UI; the two runs queue one after the other.
        prepare_run(alice, "alice-router", epochs=1)
        prepare_run(bob, "bob-router", epochs=1)
        start_run(alice, "alice-router")
        start_run(bob, "bob-router")
        for page, name in ((alice, "alice-router"), (bob, "bob-router")):
            expect(page.get_by_text(f"Saved to the library as '{name}'")).to_be_visible(timeout=300_000)
        alice.screenshot(path=ARTIFACTS / "visitor-a-1-trained.png")
        bob.screenshot(path=ARTIFACTS / "visitor-b-1-trained.png")
        a_job, b_job = job_named(studio, "alice-router"), job_named(studio, "bob-router")
        assert a_job.owner.startswith("anon:") and b_job.owner.startswith("anon:")
        assert a_job.owner != b_job.owner, "two browsers got the same identity"
        assert studio.library.get("alice-router").owner == a_job.owner
        assert studio.library.get("bob-router").owner == b_job.owner
        print(f"\ntwo visitors trained: {time.perf_counter() - started:.1f} s")

        # A reload re-attaches each visitor to their own run, never the other's.
        for page, mine, theirs, who in (
            (alice, "alice-router", "bob-router", "a"),
            (bob, "bob-router", "alice-router", "b"),
        ):
            page.reload()
            page.get_by_role("tab", name="4 · Train").click()
            line = status_line(page)
            expect(line).to_contain_text(re.compile(rf"^{mine}: completed"))
            expect(line).to_contain_text(f"Saved to the library as '{mine}'")
            assert theirs not in line.inner_text()
            page.screenshot(path=ARTIFACTS / f"visitor-{who}-2-reloaded.png")
        # On the reloaded page (fresh listings), each Library lists their own adapter and the shared example,
        # never the other's; neither do the adapter pickers.
        for page, mine, theirs, who in (
            (alice, "alice-router", "bob-router", "a"),
            (bob, "bob-router", "alice-router", "b"),
        ):
            names = library_names(page)
            assert mine in names and EXAMPLE in names and theirs not in names, (who, names)
            page.screenshot(path=ARTIFACTS / f"visitor-{who}-3-library.png", full_page=True)
            classifiers = picker_options(page, "Classify", "Classification adapter")
            assert mine in classifiers and EXAMPLE in classifiers and theirs not in classifiers, (who, classifiers)
            routers = picker_options(page, "Route", "Router (a classification adapter)")
            assert mine in routers and theirs not in routers, (who, routers)
            page.screenshot(path=ARTIFACTS / f"visitor-{who}-4-pickers.png")

        # Bob starts a long run; Alice pressing Stop on her page leaves it training.
        prepare_run(bob, "bob-long", epochs=20, batch=4, max_length=128)  # 2000 steps: the public cap
        start_run(bob, "bob-long")
        long_job = job_named(studio, "bob-long")
        assert long_job.owner == b_job.owner
        deadline = time.time() + 180
        while long_job.status != "training" and time.time() < deadline:
            time.sleep(0.2)
        assert long_job.status == "training", long_job.status
        # A reload mid-run re-attaches Bob to his running run and Alice to her own finished one.
        for page in (alice, bob):
            page.reload()
            page.get_by_role("tab", name="4 · Train").click()
        expect(status_line(bob)).to_contain_text(re.compile(r"^bob-long: training"))
        expect(status_line(alice)).to_contain_text(re.compile(r"^alice-router: completed"))
        alice.get_by_role("tab", name="4 · Train").click()
        alice.get_by_role("button", name="Stop").click()
        # Stop answered Alice about her own (finished) run: the click has been handled, and Bob's run goes on.
        expect(alice.get_by_text("That run already finished")).to_be_visible()
        assert long_job.status == "training" and not long_job.stop_requested.is_set(), long_job.status
        expect(status_line(alice)).to_contain_text(re.compile(r"^alice-router: completed"))
        expect(alice.get_by_text("Running: another visitor's run")).to_be_visible()
        alice_page_text = alice.locator("body").inner_text()
        assert "bob-long" not in alice_page_text and "bob-router" not in alice_page_text
        alice.screenshot(path=ARTIFACTS / "visitor-a-5-stop-pressed.png")
        bob.screenshot(path=ARTIFACTS / "visitor-b-5-still-training.png")

        # A newcomer (a third browser) sees no run and no adapter of theirs, and has nothing to stop.
        carol = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        carol.set_default_timeout(120_000)
        carol.goto(url)
        carol.get_by_role("tab", name="4 · Train").click()
        expect(carol.get_by_text("No run yet: start one above.")).to_be_visible()
        expect(carol.get_by_text("Running: another visitor's run")).to_be_visible()
        carol.get_by_role("button", name="Stop").click()
        expect_error_toast(carol, "No run to stop.")
        assert library_names(carol) == [EXAMPLE]
        carol.screenshot(path=ARTIFACTS / "visitor-c-newcomer.png")
        assert long_job.status == "training" and not long_job.stop_requested.is_set(), long_job.status

        # Bob stops his run: the page says "stopping…" on its next tick, and the run ends within a step or so
        # (its evaluation at the stop is the validation pass alone), saved where it stopped.
        bob.get_by_role("tab", name="4 · Train").click()
        expect(bob.get_by_role("button", name="Start training")).to_be_disabled()  # his run is going
        bob.get_by_role("button", name="Stop").click()
        pressed = time.perf_counter()
        while not long_job.stop_requested.is_set() and time.perf_counter() - pressed < 60:
            time.sleep(0.005)
        asked_at = (long_job.latest("step") or {}).get("step", 0)  # the step when the request reached the run
        expect(status_line(bob)).to_contain_text("stopping…", timeout=10_000)
        said = time.perf_counter() - pressed
        assert long_job.finished.wait(120), "Bob's long run did not stop"
        stopped = long_job.latest("done")["step"]
        print(f"Bob's run: 'stopping…' {said:.1f} s after Stop; stopped at step {stopped} (asked at step {asked_at})")
        assert stopped <= asked_at + 1, (asked_at, stopped)  # the step under way ends, and no other
        expect(status_line(bob)).to_contain_text(re.compile(rf"^bob-long: stopped · stopped at step {stopped} of \d+"))
        expect(bob.get_by_role("button", name="Start training")).to_be_enabled()

        # Alice cannot delete Bob's adapter, even by typing its name.
        delete_from_library(alice, "bob-router")
        expect_error_toast(alice, "No adapter named 'bob-router' in your library")
        assert "bob-router" in studio.library.names()
        assert (studio.library.get("bob-router").path / "adapter_model.safetensors").is_file()
        alice.screenshot(path=ARTIFACTS / "visitor-a-6-delete-refused.png")

        # The shared example is read-only for both.
        for page, who in ((alice, "a"), (bob, "b")):
            delete_from_library(page, EXAMPLE)
            expect_error_toast(page, f"'{EXAMPLE}' is a shared example and read-only")
            assert EXAMPLE in library_names(page)
            page.screenshot(path=ARTIFACTS / f"visitor-{who}-7-example-read-only.png")
        assert EXAMPLE in studio.library.names()
        assert studio.library.get(EXAMPLE).owner is None

        browser.close()
    print(f"two-visitor test: {time.perf_counter() - started:.1f} s")
