"""What the Playwright tests share: Debian's Chromium, its flags for this offline machine, a port, and a
studio served in-process for a test module."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import ROOT, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
# CI installs chromium (.ci/run), so there a missing browser fails the test instead of skipping it.
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="needs Debian's chromium (.ci/run installs it)"
)


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@contextmanager
def served(studio) -> Iterator[str]:
    """`studio`'s app on a free local port, for the block; its URL. After it, runs still going are stopped."""
    from studio.ui import build_app, launch

    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        for job in studio.jobs.jobs():
            if not job.finished.is_set():
                studio.jobs.stop(job.id)
                job.finished.wait(60)
        demo.close()
