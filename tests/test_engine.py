"""The training engine end to end on the real MiniLM: learning, jobs, stop, failure, restart, CLI, DDP."""

import json
import os
import subprocess
import sys
import time
from functools import partial

import pytest
import torch
from helpers import ROOT, ROUTING, cli
from helpers import quick as tiny_run

from adapter_core import AdapterError, classify, load_base
from adapter_core.cli import main as cli_main
from adapter_core.engine.evaluation import load_with_base
from adapter_core.engine.jobs import JobManager
from adapter_core.engine.runs import RunStore
from adapter_core.engine.train import train
from adapter_core.io import CONFIG_FILE

# One epoch of the routing sample: these tests look at what a whole run leaves behind.
quick = partial(tiny_run, max_steps=0, epochs=1, batch_size=32, max_length=48, lr=2e-3)


@pytest.mark.slow  # the complete tier: a real run of several epochs
def test_training_lifts_validation_accuracy_well_above_chance(tmp_path):
    events = []
    result = train(quick(epochs=3), tmp_path, events.append)
    evals = [e.metrics["accuracy"] for e in events if e.kind == "eval"]
    assert result.status == "completed"
    assert evals[-1] >= 0.85, evals  # three balanced classes: chance is 1/3
    assert max(evals) == result.metrics["accuracy"]
    kinds = {e.kind for e in events}
    assert {"status", "data", "step", "eval", "done"} <= kinds
    step = next(e for e in events if e.kind == "step")
    assert step.lr > 0 and step.examples_per_sec > 0 and step.eta_s >= 0 and step.total_steps == result.steps
    base, name = load_with_base(tmp_path)
    preds = classify(
        base.model, base.tokenizer, ["I was charged twice for my order", "How do I pair it over Bluetooth?"], name
    )
    assert [p.label for p in preds] == ["billing", "tech"]


@pytest.mark.parametrize("base_dropout", [True, False])
def test_base_dropout_setting_holds_through_every_training_step(base_dropout, tmp_path, monkeypatch):
    import adapter_core.engine.setup as engine

    seen = []  # (training, grad enabled) of the base's dropout modules at each call

    def load_and_watch(name):
        base = load_base(name)
        for m in base.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
        return base

    monkeypatch.setattr(engine, "load_base", load_and_watch)
    # An evaluation after every step: it must hand back the modes that training set.
    result = train(quick(base_dropout=base_dropout, max_steps=3, eval_every=1), tmp_path)
    assert result.steps == 3
    in_training = {training for training, grad in seen if grad}
    assert in_training == {base_dropout}
    assert not any(training for training, grad in seen if not grad)  # evaluation runs without dropout
    saved = json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())
    assert saved["train_config"]["base_dropout"] is base_dropout


def test_stop_midrun_keeps_a_loadable_stopped_adapter_and_queue_is_visible(tmp_path):
    manager = JobManager(RunStore(tmp_path))
    first = manager.submit(quick(epochs=50))
    second = manager.submit(quick(max_steps=2, name="second"))
    deadline = time.time() + 300
    while manager.running() is not first:  # the worker thread takes the first job up in its own time
        assert time.time() < deadline and first.status != "failed", first.error
        time.sleep(0.05)
    assert manager.queued() == [second]
    while not any(e["kind"] == "step" and e["step"] >= 3 for e in first.events):
        assert time.time() < deadline and first.status not in ("failed",), first.error
        time.sleep(0.2)
    manager.stop(first.id)
    manager.wait(first.id, 300)
    assert first.status == "stopped"
    assert first.run.status()["status"] == "stopped"
    meta = json.loads((first.run.adapter_dir / "adapter_config.json").read_text())
    assert meta["training"]["status"] == "stopped"
    base, name = load_with_base(first.run.dir)
    assert classify(base.model, base.tokenizer, ["where is my parcel"], name)[0].label in {"orders", "tech", "billing"}
    manager.wait(second.id, 300)
    assert second.status == "completed"


def test_failed_run_reports_and_manager_runs_the_next(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,score\nhello,1\n")
    manager = JobManager(RunStore(tmp_path))
    failing = manager.submit(quick(data=str(bad)))
    good = manager.submit(quick(max_steps=2))
    manager.wait(failing.id, 300)
    assert failing.status == "failed" and "bad.csv has no label column" in failing.error
    assert failing.run.status()["status"] == "failed"
    manager.wait(good.id, 300)
    assert good.status == "completed" and good.run.has_adapter


def test_closing_the_manager_saves_the_running_run_and_cancels_the_queue(tmp_path):
    manager = JobManager(RunStore(tmp_path))
    running = manager.submit(quick(epochs=50))
    queued = manager.submit(quick(max_steps=2, name="queued"))
    deadline = time.time() + 300
    while not any(e["kind"] == "step" for e in running.events):
        assert time.time() < deadline and running.status != "failed", running.error
        time.sleep(0.2)
    manager.close()
    assert not manager._worker.is_alive()
    assert running.status == "stopped" and running.run.has_adapter
    assert queued.status == "cancelled" and not queued.run.has_adapter
    with pytest.raises(AdapterError, match="shut down"):
        manager.submit(quick(max_steps=2))


def test_cancel_a_queued_run(tmp_path):
    manager = JobManager(RunStore(tmp_path))
    first = manager.submit(quick(max_steps=3))
    queued = manager.submit(quick(max_steps=3))
    manager.stop(queued.id)
    assert queued.status == "cancelled" and manager.queued() == []
    manager.wait(first.id, 300)
    assert first.status == "completed"


@pytest.mark.slow  # the complete tier: the CLI as subprocesses (test_cli_errors runs it in-process)
def test_a_run_from_another_process_is_listed_and_loadable(tmp_path, monkeypatch, capsys):
    script = (
        "from adapter_core.engine.jobs import JobManager\n"
        "from adapter_core.engine.train import TrainConfig\n"
        f"m = JobManager()\nj = m.submit(TrainConfig(data={ROUTING!r}, name='restart', max_steps=4, max_length=48))\n"
        "m.wait(j.id)\nprint(j.status, j.id)\n"
    )
    env = {**os.environ, "ADAPTER_STUDIO_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    status, run_id = out.stdout.split()[-2:]
    assert status == "completed"
    runs = RunStore(tmp_path).list()
    assert [r.id for r in runs] == [run_id]
    run = runs[0]
    assert run.status()["status"] == "completed"
    curve = [e for e in run.events() if e["kind"] == "step"]
    assert [e["step"] for e in curve] == [1, 2, 3, 4]
    base, name = load_with_base(run.dir)
    assert name == "restart"
    monkeypatch.setenv("ADAPTER_STUDIO_HOME", str(tmp_path))
    assert cli_main(["runs"]) == 0  # the CLI in this process (test_cli_train_evaluate_predict_round_trip spawns it)
    listed = capsys.readouterr().out
    assert run_id in listed and "completed" in listed


def test_interrupted_run_is_marked_as_such(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("ghost", quick().to_dict())
    status = json.loads((run.dir / "status.json").read_text())
    status.update(status="training", pid=999_999_999)
    (run.dir / "status.json").write_text(json.dumps(status))
    assert store.list()[0].status()["status"] == "interrupted"


@pytest.mark.slow  # the complete tier: the CLI as subprocesses (test_cli_errors runs it in-process)
def test_cli_train_evaluate_predict_round_trip(tmp_path):
    out = tmp_path / "routing"
    trained = cli(
        "train",
        "--base",
        "minilm",
        "--data",
        ROUTING,
        "--epochs",
        "2",
        "--lr",
        "2e-3",
        "--batch-size",
        "32",
        "--max-length",
        "48",
        "--out",
        str(out),
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "completed" in trained.stdout and "accuracy" in trained.stdout
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    evaluated = cli("evaluate", "--adapter", str(out), "--data", ROUTING, "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] > 0.8 and 0 < metrics["macro_f1"] <= 1 and metrics["rows"] == 480
    predicted = cli("predict", "--adapter", str(out), "--text", "Please send me a VAT invoice", "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout.strip().splitlines()[-1])[0]
    assert answer["label"] == "billing" and abs(sum(answer["probabilities"].values()) - 1) < 1e-4


@pytest.mark.slow  # the complete tier: two torchrun processes
def test_torchrun_two_processes_train_one_adapter(tmp_path, capsys):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "adapter_core",
        "train",
        "--data",
        ROUTING,
        "--max-steps",
        "4",
        "--max-length",
        "48",
        "--batch-size",
        "16",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    training = next(e for e in events if e["kind"] == "status" and e.get("status") == "training")
    assert training["info"]["processes"] == 2
    assert sum(e["kind"] == "step" for e in events) == 4  # rank 0 alone logs
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "adapter",
        "config.json",
        "metrics.jsonl",
        "report.json",
        "status.json",
    ]  # no checkpoint/: a completed run has nothing to resume
    capsys.readouterr()
    assert cli_main(["predict", "--adapter", str(out), "--text", "my card was charged twice", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4
