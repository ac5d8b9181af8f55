"""`python -m adapter_core`: every failure is one line `error: ...` on stderr and a non-zero exit, never a
traceback: bad settings, unwritable --out paths, damaged run and adapter folders, and unexpected bugs.

`main(argv)` runs in-process here; one case runs `python -m adapter_core` as its own process."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, ROUTING

from adapter_core import cli
from adapter_core.cli import serve as cli_serve
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
    latin1 = tmp / "bad.csv"  # a data file in another encoding
    latin1.write_bytes(b"text,label\ncaf\xe9,a\n")
    return {"file": a_file, "garbled": garbled, "run": run_dir, "home": home, "latin1": latin1}


TRAIN = ["train", "--data", ROUTING, "--max-length", "32"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    return damaged_files(tmp_path_factory.mktemp("cli"))


def run_cli(args: list[str], monkeypatch, capsys, **env: str) -> tuple[int, str, str]:
    """`main(args)` in this process with `env` set: (exit code, stdout, stderr)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def test_a_bad_argument_from_the_shell_is_a_usage_line_and_exit_2(tmp_path):
    """The one case run as its own process: `python -m adapter_core`, argparse's own message, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "adapter_core", "train", "--seed", "many", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "argument --seed: invalid int value: 'many'" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, env, expected",
    [
        pytest.param(
            lambda p: [*TRAIN, "--out", "/proc/adapter-studio-test/x"],
            {},
            "/proc/adapter-studio-test/x",
            marks=pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's"),
        ),
        (lambda p: [*TRAIN, "--out", str(p["file"] / "sub")], {}, "a-file/sub"),
        (lambda p: [*TRAIN, "--seed", "-1", "--out", str(p["file"].parent / "seed")], {}, "seed must be"),
        (lambda p: [*TRAIN, "--epochs", "1e309", "--out", str(p["file"].parent / "epochs")], {}, "epochs must be"),
        (lambda p: ["runs"], {"ADAPTER_STUDIO_HOME": "home"}, "3 run folder(s)"),
        (lambda p: ["evaluate", "--adapter", str(p["garbled"]), "--data", ROUTING], {}, "adapter_config.json"),
        (lambda p: ["evaluate", "--adapter", str(p["run"]), "--data", ROUTING], {}, "adapter_config.json"),
        (lambda p: [*TRAIN, "--out", str(p["file"])], {}, "is a file"),
        (lambda p: [*TRAIN, "--lr", "nan", "--out", str(p["file"].parent / "lr")], {}, "lr must be"),
        (lambda p: [*TRAIN, "--max-steps", "-3", "--out", str(p["file"].parent / "st")], {}, "max_steps must be"),
        (lambda p: [*TRAIN, "--batch-size", "0", "--out", str(p["file"].parent / "bs")], {}, "batch_size must be"),
        (
            lambda p: [*TRAIN, "--bottleneck", "0", "--out", str(p["file"].parent / "r")],
            {},
            "bottleneck must be a positive",
        ),
        (
            lambda p: ["train", "--data", str(p["latin1"]), "--out", str(p["file"].parent / "x")],
            {},
            "bad.csv is not UTF-8",
        ),
        (lambda p: ["runs"], {"ADAPTER_STUDIO_HOME": "file"}, "a-file: File exists"),
        (lambda p: ["predict", "--adapter", str(p["file"].parent / "nowhere"), "--text", "hi"], {}, "nowhere"),
        (lambda p: ["serve", "--library", str(p["file"].parent / "nowhere")], {}, "'nowhere' is not a folder"),
        (lambda p: ["serve", "--library", str(p["file"].parent), "--router", "ghost"], {}, "No adapter named 'ghost'"),
        (lambda p: ["serve", "--library", str(p["file"].parent), "--max-batch", "0"], {}, "--max-batch must be"),
    ],
)
def test_each_failure_is_one_error_line_and_a_nonzero_exit(paths, args, env, expected, monkeypatch, capsys):
    code, _, err = run_cli(args(paths), monkeypatch, capsys, **{k: str(paths[v]) for k, v in env.items()})
    assert code != 0
    assert expected in one_error_line(err)


def test_the_messages_say_what_was_wrong(paths, monkeypatch, capsys):
    tmp = paths["file"].parent
    said = {
        "seed": one_error_line(run_cli([*TRAIN, "--seed", "-1", "--out", str(tmp / "s")], monkeypatch, capsys)[2]),
        "epochs": one_error_line(
            run_cli([*TRAIN, "--epochs", "1e309", "--out", str(tmp / "e")], monkeypatch, capsys)[2]
        ),
    }
    assert "seed" in said["seed"] and "-1" in said["seed"]
    assert "epochs" in said["epochs"] and "inf" in said["epochs"]
    # Refused settings leave nothing behind.
    assert not (tmp / "s").exists() and not (tmp / "e").exists()


def test_runs_still_lists_the_readable_runs(paths, monkeypatch, capsys):
    code, out, err = run_cli(["runs"], monkeypatch, capsys, ADAPTER_STUDIO_HOME=str(paths["home"]))
    assert code == 2 and "fine" in out and "bad-status" not in out
    for name in ("bad-status", "bad-config", "list-status"):
        assert name in err


def test_an_unexpected_bug_is_one_line_asking_for_a_report(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("index went wrong\nsecond line")

    monkeypatch.setattr(cli_serve, "cmd_runs", boom)
    monkeypatch.delenv("ADAPTER_STUDIO_DEBUG", raising=False)
    assert cli.main(["runs"]) == 1
    err = capsys.readouterr().err
    assert err == "error: unexpected failure (RuntimeError: index went wrong second line); please report it\n"


def test_debug_mode_logs_the_traceback_too(monkeypatch, caplog):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli_serve, "cmd_runs", boom)
    monkeypatch.setenv("ADAPTER_STUDIO_DEBUG", "1")
    with caplog.at_level(logging.DEBUG, logger="adapter_studio"):
        assert cli.main(["runs"]) == 1
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_an_os_error_names_the_path(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/my-runs")

    monkeypatch.setattr(cli_serve, "cmd_runs", denied)
    assert cli.main(["runs"]) == 1
    assert capsys.readouterr().err == "error: cannot use /data/my-runs: Permission denied\n"
