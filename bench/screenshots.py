"""Screenshots of each studio tab along a newcomer's journey, for docs/screenshots.md.

    python bench/screenshots.py --repo PATH --label before|after

Starts the studio of the checkout at PATH (its own code: a subprocess with cwd and PYTHONPATH there) in
local mode with a scratch home, so no real library is touched, and drives Chromium at 1,280 x 900:
Model (minilm) -> Data (Support routing sample) -> Adapter (defaults, name support-router) -> Train (to
the end) -> Use (Classify, Route) -> Compare -> Library. Each shot is a full-page JPEG in
docs/screenshots/LABEL/. A step whose element is missing (labels differ between versions) is skipped with
a note; the other steps go on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Error, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
CHROMIUM_ARGS += ["--no-first-run", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 900}
NAME = "support-router"
SECOND = "support-router-small"
MESSAGE = "I was charged twice"
STEP_TIMEOUT_MS = 60_000  # a loaded 2-core machine is slow to load a model or answer
RUN_TIMEOUT_S = 900  # MiniLM on the routing sample takes about a minute on an idle machine
LAUNCH = "import sys; from studio.ui import build_app, launch; launch(build_app(), server_port=int(sys.argv[1]))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_studio(repo: Path, home: Path, port: int) -> subprocess.Popen:
    """The studio of `repo`, served on `port` with `home` as its library; returns once it answers."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "ADAPTER_STUDIO_PUBLIC")}
    env.update(PYTHONPATH=str(repo), ADAPTER_STUDIO_HOME=str(home), GRADIO_ANALYTICS_ENABLED="False")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = open(home / "studio.log", "w")  # noqa: SIM115 (the subprocess writes to it until it ends)
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port)], cwd=repo, env=env, stdout=log, stderr=log)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the studio exited; see {home / 'studio.log'}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    sys.exit("the studio did not answer within 5 minutes")


class Journey:
    def __init__(self, page: Page, out: Path, home: Path):
        self.page, self.out, self.home = page, out, home

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(1500)  # let charts and tables finish drawing
        path = self.out / f"{name}.jpg"
        self.page.screenshot(path=path, type="jpeg", quality=70, full_page=True)
        print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size // 1024} KB)")

    def step(self, name: str, actions: Callable[[], None]) -> None:
        """Do `actions`, then shoot `name`; an element that never shows skips the shot with a note."""
        print(name)
        try:
            actions()
        except (AssertionError, Error, TimeoutError) as e:  # expect() raises AssertionError
            print(f"  skipped: {str(e).splitlines()[0]}")
            return
        self.shot(name)

    def tab(self, name: str) -> None:
        """Open the tab whose name starts with `name` ('5' finds '5 · Use')."""
        self.page.get_by_role("tab", name=re.compile(rf"^{re.escape(name)}")).first.click()
        self.page.wait_for_timeout(500)

    def pick(self, label: str, option: str) -> None:
        """Choose `option` in the Gradio dropdown labelled `label`."""
        box = self.page.get_by_label(label).first
        box.click()
        try:
            self.page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
        except Error:  # not listed yet (a picker refreshes its choices late): type it, as a custom value
            box.fill(option)
            box.press("Enter")
        self.page.keyboard.press("Escape")

    def panel(self):
        return self.page.get_by_role("tabpanel").filter(visible=True).first

    # The journey's steps --------------------------------------------------------------------------------
    def model(self) -> None:
        self.tab("1")
        self.pick("Base model", "minilm")
        self.page.get_by_role("button", name="Load model").click()
        expect(self.page.get_by_text(re.compile(r"minilm loaded")).first).to_be_visible()

    def data(self) -> None:
        self.tab("2")
        self.page.get_by_role("button", name=re.compile("Use (this )?sample")).click()
        expect(self.panel().get_by_text(re.compile(r"\d+ of \d+ rows used")).first).to_be_visible()

    def adapter(self) -> None:
        self.tab("3")
        name = self.page.get_by_label("Adapter name")
        name.fill(NAME)
        name.press("Tab")
        expect(self.panel().get_by_text(re.compile(r"trainable parameters")).first).to_be_visible()

    def start(self) -> None:
        self.tab("4")
        start = self.page.get_by_role("button", name=re.compile("^Start"))
        expect(start).to_be_enabled()
        start.click()
        self.wait_for_run(lambda _: self.steps() >= 3, "its first steps")
        self.page.wait_for_timeout(3000)  # the page polls the run

    def finish(self) -> None:
        status = self.wait_for_run(lambda s: s.get("status") in ("completed", "stopped", "failed"), "its end")
        print(f"  run {status['status']}")
        for _ in range(30):  # the page polls the run: wait until its report is drawn
            if self.panel().locator(".js-plotly-plot").count() >= 2:
                break
            self.page.wait_for_timeout(1000)
        self.page.wait_for_timeout(3000)

    def classify(self) -> None:
        self.tab("5")
        self.page.get_by_role("tab", name="Classify").click()
        self.pick("Classification adapter", NAME)
        self.page.get_by_label("Text", exact=True).fill(MESSAGE)
        self.page.get_by_role("button", name="Classify", exact=True).click()
        expect(self.panel().get_by_text(re.compile("billing|orders|tech")).filter(visible=True).first).to_be_visible()

    def route(self) -> None:
        self.tab("5")
        self.page.get_by_role("tab", name="Route").click()
        self.pick("Router (a classification adapter", NAME)
        self.page.get_by_label("Customer message").fill(MESSAGE)
        self.page.get_by_role("button", name="Route and answer", exact=True).click()
        self.page.wait_for_timeout(4000)  # its answer, or its toast

    def second_run(self) -> None:
        """A smaller adapter (the Quick look preset) to compare with: Compare takes 2 to 4."""
        self.tab("3")
        self.page.get_by_label("Quick look").first.check()
        name = self.page.get_by_label("Adapter name")
        name.fill(SECOND)
        name.press("Tab")
        self.tab("4")
        start = self.page.get_by_role("button", name=re.compile("^Start"))
        expect(start).to_be_enabled()
        start.click()
        self.wait_for_run(lambda _: len(list((self.home / "runs").glob("*/status.json"))) >= 2, "its start")
        self.wait_for_run(lambda s: s.get("status") in ("completed", "stopped", "failed"), "its end")

    def compare(self) -> None:
        self.second_run()
        self.tab("6")
        self.pick("Adapters (2 to 4", NAME)
        self.pick("Adapters (2 to 4", SECOND)
        self.page.get_by_label("Input", exact=True).fill(MESSAGE)
        self.page.get_by_role("button", name="Run side by side").click()
        self.page.wait_for_timeout(4000)

    def library(self) -> None:
        self.tab("Library")
        expect(self.page.get_by_role("gridcell", name=NAME).filter(visible=True).first).to_be_visible()

    # The run, read from the scratch home's run store (the same in every version) -----------------------
    def run_dir(self) -> Path | None:
        runs = sorted((self.home / "runs").glob("*/status.json"))
        return runs[-1].parent if runs else None

    def steps(self) -> int:
        run = self.run_dir()
        events = (run / "metrics.jsonl").read_text().splitlines() if run and (run / "metrics.jsonl").exists() else []
        return sum('"kind": "step"' in e for e in events)

    def wait_for_run(self, done: Callable[[dict], bool], what: str) -> dict:
        deadline = time.time() + RUN_TIMEOUT_S
        while time.time() < deadline:
            run = self.run_dir()
            status = json.loads((run / "status.json").read_text()) if run else {}
            if done(status):
                return status
            self.page.wait_for_timeout(2000)
        raise TimeoutError(f"the run did not reach {what} in {RUN_TIMEOUT_S} s")


def shoot(repo: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="studio-shots-") as tmp, sync_playwright() as pw:
        home, port = Path(tmp), free_port()
        studio = start_studio(repo, home, port)
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            expect.set_options(timeout=STEP_TIMEOUT_MS)
            page.goto(f"http://127.0.0.1:{port}/")
            j = Journey(page, out, home)
            j.step("1-model", j.model)
            j.step("2-data", j.data)
            j.step("3-adapter", j.adapter)
            j.step("4-train-running", j.start)
            j.step("4-train", j.finish)
            j.step("5-use-classify", j.classify)
            j.step("5-use-route", j.route)
            j.step("6-compare", j.compare)
            j.step("7-library", j.library)
        finally:
            browser.close()
            studio.terminate()
            studio.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose studio to shoot")
    parser.add_argument("--label", choices=["before", "after"], required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # so the studio and scratch home go too
    started = time.perf_counter()
    out = ROOT / "docs" / "screenshots" / args.label
    shoot(args.repo.resolve(), out)
    total = sum(p.stat().st_size for p in out.glob("*.jpg"))
    print(f"{len(list(out.glob('*.jpg')))} shots, {total // 1024} KB, in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
