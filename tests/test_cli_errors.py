"""`python -m adapter_core`: every failure is one line `error: ...` on stderr and a non-zero exit, never a
traceback: bad settings, unwritable --out paths, damaged run and adapter folders, and unexpected bugs."""

import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import ROOT, ROUTING

from adapter_core import cli
from adapter_core.engine.runs import RunStore
from adapter_core.engine.train import TrainConfig


def damaged_files(tmp: Path) -> dict[str, Path]:
    """A file where folders are expected, a garbled adapter, a run with a broken adapter, and a data home
    with one readable run and three damaged ones."""
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    garbled = tmp / "garbled-adapter"  # an adapter folder whose config is cut short
    garbled.mkdir()
    (garbled / "adapter_config.json").write_text('{"name": "x", "task": ')
    (garbled / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    run_dir = tmp / "run-with-broken-adapter"  # a run folder whose adapter/ config is binary junk
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_bytes(b"\xff\xfe\x00\x01 junk")
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    home = tmp / "home"
    store = RunStore(home)
    store.create("fine", TrainConfig(data=ROUTING).to_dict())
    for name, file, text in (
        ("bad-status", "status.json", '{"status": "trai'),
        ("bad-config", "config.json", "garbage"),
        ("list-status", "status.json", "[1, 2, 3]"),
    ):
        run = store.create(name, TrainConfig(data=ROUTING).to_dict())
        (run.dir / file).write_text(text)
    return {"file": a_file, "garbled": garbled, "run": run_dir, "home": home}


TRAIN = ["train", "--data", ROUTING, "--max-length", "32"]


def subprocess_cases(tmp: Path, paths: dict[str, Path]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (arguments, extra environment): each runs as its own `python -m adapter_core` process."""
    return {
        "out under /proc": ([*TRAIN, "--out", "/proc/adapter-studio-test/x"], {}),
        "out under a file": ([*TRAIN, "--out", str(paths["file"] / "sub")], {}),
        "seed -1": ([*TRAIN, "--seed", "-1", "--out", str(tmp / "seed")], {}),
        "epochs 1e309": ([*TRAIN, "--epochs", "1e309", "--out", str(tmp / "epochs")], {}),
        "runs over damaged folders": (["runs"], {"ADAPTER_STUDIO_HOME": str(paths["home"])}),
        "evaluate a garbled adapter": (["evaluate", "--adapter", str(paths["garbled"]), "--data", ROUTING], {}),
        "evaluate a run with a broken adapter": (["evaluate", "--adapter", str(paths["run"]), "--data", ROUTING], {}),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every subprocess case, two at a time (each process spends seconds importing torch)."""
    tmp = tmp_path_factory.mktemp("cli")
    paths = damaged_files(tmp)

    def run(item):
        name, (args, env) = item
        proc = subprocess.run(
            [sys.executable, "-m", "adapter_core", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        )
        return name, proc

    with ThreadPoolExecutor(2) as pool:
        return {**dict(pool.map(run, subprocess_cases(tmp, paths).items())), "tmp": tmp, "paths": paths}


NAMES = [
    "out under /proc",
    "out under a file",
    "seed -1",
    "epochs 1e309",
    "runs over damaged folders",
    "evaluate a garbled adapter",
    "evaluate a run with a broken adapter",
]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's"))
        if "proc" in n
        else n
        for n in NAMES
    ],
)
def test_each_failure_is_one_error_line_and_a_nonzero_exit(results, name):
    proc = results[name]
    one_error_line(proc.stderr)
    assert proc.returncode != 0


def test_the_messages_say_what_was_wrong(results):
    tmp = results["tmp"]
    said = {name: results[name].stderr.strip() for name in NAMES}
    assert sys.platform != "linux" or "/proc/adapter-studio-test/x" in said["out under /proc"]
    assert str(tmp / "a-file" / "sub") in said["out under a file"]
    assert "seed" in said["seed -1"] and "-1" in said["seed -1"]
    assert "epochs" in said["epochs 1e309"] and "inf" in said["epochs 1e309"]
    assert "3 run folder(s)" in said["runs over damaged folders"]
    assert "adapter_config.json" in said["evaluate a garbled adapter"]
    assert "adapter_config.json" in said["evaluate a run with a broken adapter"]
    # Refused settings leave nothing behind.
    assert not (tmp / "seed").exists() and not (tmp / "epochs").exists()


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (lambda p: [*TRAIN, "--out", str(p["file"])], {}, "is a file"),
        (lambda p: [*TRAIN, "--lr", "nan", "--out", str(p["file"].parent / "lr")], {}, "lr must be"),
        (lambda p: [*TRAIN, "--max-steps", "-3", "--out", str(p["file"].parent / "st")], {}, "max_steps must be"),
        (lambda p: [*TRAIN, "--batch-size", "0", "--out", str(p["file"].parent / "bs")], {}, "batch_size must be"),
        (lambda p: ["runs"], {"ADAPTER_STUDIO_HOME": "file"}, "a-file: File exists"),
        (lambda p: ["predict", "--adapter", str(p["file"].parent / "nowhere"), "--text", "hi"], {}, "nowhere"),
        (lambda p: ["serve", "--library", str(p["file"].parent / "nowhere")], {}, "'nowhere' is not a folder"),
        (lambda p: ["serve", "--library", str(p["file"].parent), "--router", "ghost"], {}, "No adapter named 'ghost'"),
        (lambda p: ["serve", "--library", str(p["file"].parent), "--max-batch", "0"], {}, "--max-batch must be"),
    ],
)
def test_more_failures_in_process(results, args, env, expected, monkeypatch, capsys):
    paths = results["paths"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(paths[value]))
    assert cli.main(args(paths)) != 0
    captured = capsys.readouterr()
    assert expected in one_error_line(captured.err)


def test_runs_still_lists_the_readable_runs(results):
    proc = results["runs over damaged folders"]
    assert "fine" in proc.stdout and "bad-status" not in proc.stdout
    for name in ("bad-status", "bad-config", "list-status"):
        assert name in proc.stderr


def test_an_unexpected_bug_is_one_line_asking_for_a_report(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("index went wrong\nsecond line")

    monkeypatch.setattr(cli, "cmd_runs", boom)
    monkeypatch.delenv("ADAPTER_STUDIO_DEBUG", raising=False)
    assert cli.main(["runs"]) == 1
    err = capsys.readouterr().err
    assert err == "error: unexpected failure (RuntimeError: index went wrong second line); please report it\n"


def test_debug_mode_logs_the_traceback_too(monkeypatch, caplog):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "cmd_runs", boom)
    monkeypatch.setenv("ADAPTER_STUDIO_DEBUG", "1")
    with caplog.at_level(logging.DEBUG, logger="adapter_studio"):
        assert cli.main(["runs"]) == 1
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_an_os_error_names_the_path(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/my-runs")

    monkeypatch.setattr(cli, "cmd_runs", denied)
    assert cli.main(["runs"]) == 1
    assert capsys.readouterr().err == "error: cannot use /data/my-runs: Permission denied\n"
