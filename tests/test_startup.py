"""The real app (`python app.py`) starts and serves even when its adapter library holds damaged folders.

Each case starts app.py as a subprocess on a free port with its own ADAPTER_STUDIO_HOME, asks it for
`/list_adapters` through gradio_client, and checks that the good adapter is listed, the damaged ones are
skipped (and logged), and the server is still alive.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT
from studio_fixtures import publish_random

from studio.library import Library

pytestmark = pytest.mark.slow  # the complete tier: app.py started as a process

GOOD = "good-router"
BROKEN = ("broken", "bad-json", "no-weights")
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A data directory whose library holds one good adapter and several damaged folders."""
    home = tmp_path_factory.mktemp("startup-home")
    publish_random(SimpleNamespace(home=home, library=Library(home)), "minilm", GOOD, "classification", ["a", "b"])
    adapters = home / "adapters"
    broken = adapters / "broken"  # a config with no real content, and weights that are not safetensors
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"task": "classification", "config": {}, "base": "x"}))
    (broken / "adapter_model.safetensors").write_bytes(b"\x00\x01not a safetensors file" * 10)
    bad_json = adapters / "bad-json"
    bad_json.mkdir()
    (bad_json / "adapter_config.json").write_text('{"task": "classification", "config": {')
    (bad_json / "adapter_model.safetensors").write_bytes(os.urandom(64))
    no_weights = adapters / "no-weights"  # a good config without its weights
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_bytes((adapters / GOOD / "adapter_config.json").read_bytes())
    (adapters / "stray-file.txt").write_text("not an adapter folder")
    return home


def start_app(home: Path, public: bool, log_path: Path):
    """`python app.py` on a free port; returns (process, url) once the port answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "ADAPTER_STUDIO_SECRET")}
    env.update(
        ADAPTER_STUDIO_HOME=str(home),
        ADAPTER_STUDIO_PUBLIC="1" if public else "0",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_app(proc)
            pytest.fail(f"app.py exited with {proc.returncode} while starting:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.5)
    stop_app(proc)
    pytest.fail(f"app.py did not answer on {url} within {START_TIMEOUT_S} s:\n{tail(log_path)}")


def stop_app(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    proc.log.close()


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


@pytest.mark.parametrize("public", [False, True], ids=["local", "public"])
def test_app_starts_and_lists_only_good_adapters(home, tmp_path, public):
    from gradio_client import Client

    log_path = tmp_path / "app.log"
    started = time.perf_counter()
    proc, url = start_app(home, public, log_path)
    try:
        print(f"\napp.py ({'public' if public else 'local'}) answered after {time.perf_counter() - started:.1f} s")
        rows = Client(url, verbose=False).predict(api_name="/list_adapters")
        assert isinstance(rows, list) and all(isinstance(r, dict) and "adapter" in r for r in rows), rows
        names = [r["adapter"] for r in rows]
        assert names == [GOOD], f"{names}\n{tail(log_path)}"
        (row,) = rows
        assert row["task"] == "classification" and row["base"] == "minilm"
        assert row.get("owner") == ("shared example" if public else None)  # one user: no owner column
        assert proc.poll() is None, f"app.py died after serving /list_adapters:\n{tail(log_path)}"
        # The page itself still loads after the listing.
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
    finally:
        stop_app(proc)
    log = tail(log_path, 100_000)
    for name in ("broken", "bad-json", "no-weights"):
        assert f"Skipping adapter folder {name!r}" in log, log[-4000:]
    assert all((home / "adapters" / name).is_dir() for name in BROKEN), "a damaged folder was removed"
