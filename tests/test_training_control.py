"""Training control on tiny models: the nested config and its one from_dict policy, the CLI's adapter
options, early stopping, resume (ends where an uninterrupted run ends), continuing an adapter, trackers,
instruction samples, the run recorder, the per-class report, and a job manager that shares its base."""

import json
import signal
from functools import partial
from pathlib import Path

import pytest
import torch
from helpers import ROOT, ROUTING, tiny_llama, tiny_model
from helpers import quick as tiny_run
from safetensors.torch import load_file
from transformers import AutoTokenizer

import adapter_core.engine.jobs as jobs_module
import adapter_core.engine.loop as loop
import adapter_core.engine.sample_answers as samples
import adapter_core.engine.setup as recipe
import adapter_core.engine.tracking as tracking
from adapter_core import AdapterConfig, AdapterError, list_adapters
from adapter_core.catalog import CATALOG, Base, _converted_gguf, embedded_path
from adapter_core.cli import build_parser, main, train_config
from adapter_core.engine.jobs import JobManager
from adapter_core.engine.runs import Run, RunRecorder, RunStore
from adapter_core.engine.train import Event, TrainConfig, train
from adapter_core.io import CONFIG_FILE, WEIGHTS_FILE, read_adapter_config
from adapter_core.layers import BottleneckAdapter
from adapter_core.placement import model_family
from adapter_core.state import ensure_state

ORDERS = str(ROOT / "sample_data" / "orders_sft.csv")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))


def tiny_bert(tokenizer, name: str = "minilm") -> Base:
    model = tiny_model("bert", head="base")
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ensure_state(model, model_family(model)).base_name = name
    return Base(name, model, tokenizer, model_family(model))


@pytest.fixture
def tiny_base(monkeypatch, minilm_tokenizer):
    """Training loads a tiny BERT (hidden 32, 2 layers) with MiniLM's tokenizer; the list counts loads."""
    loads = []

    def load(name):
        loads.append(name)
        return tiny_bert(minilm_tokenizer, name)

    monkeypatch.setattr(recipe, "load_base", load)
    return loads


# Four steps with an evaluation every two: enough for a stop, a checkpoint and a resume to differ.
quick = partial(tiny_run, base="minilm", name="route", max_steps=4, batch_size=16, max_length=48, lr=5e-3, eval_every=2)


def saved_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / WEIGHTS_FILE)


# The config --------------------------------------------------------------------------------------------
def test_from_dict_maps_legacy_keys_and_refuses_unknown_ones():
    old = TrainConfig.from_dict({"data": "x.csv", "bottleneck": 8, "placement": "pfeiffer", "dropout": 0.1})
    assert old.adapter == AdapterConfig(bottleneck=8, placement="pfeiffer", dropout=0.1)
    config = TrainConfig(data="x.csv", adapter=AdapterConfig(reduction_factor=8, leave_out=[1], init="xavier"))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.to_dict()["adapter"]["reduction_factor"] == 8
    with pytest.raises(AdapterError, match=r"Unknown training config field\(s\): \['bottlenek'\]\. Known fields: \["):
        TrainConfig.from_dict({"data": "x.csv", "bottlenek": 8})
    with pytest.raises(AdapterError, match=r"Unknown adapter config field\(s\): \['width'\]"):
        TrainConfig.from_dict({"data": "x.csv", "adapter": {"width": 8}})
    with pytest.raises(AdapterError, match="adapter settings are not valid"):
        TrainConfig.from_dict({"data": "x.csv", "adapter": {"leave_out": ["x"]}})


def test_check_validates_the_nested_adapter_and_the_new_settings():
    config = TrainConfig(data="x.csv")
    config.check()
    config.adapter.placement = "sideways"  # changed after it was made
    with pytest.raises(AdapterError, match="placement must be one of houlsby, pfeiffer, parallel"):
        config.check()
    for bad, key in (
        ({"early_stopping_patience": -1}, "early_stopping_patience"),
        ({"report_to": "wandb"}, "report_to must be one of none, tensorboard, mlflow, trackio"),
        ({"sample_prompts": 11}, "sample_prompts"),
        ({"init_from": ""}, "init_from"),
        ({"init_from": "a", "mode": "full"}, "full fine-tune"),
    ):
        with pytest.raises(AdapterError, match=key):
            TrainConfig(data="x.csv", **bad).check()


def test_cli_reaches_every_adapter_option():
    args = build_parser().parse_args(
        ["train", "--data", "d.csv", "--out", "runs/x", "--reduction-factor", "12", "--placement", "parallel"]
        + ["--activation", "tanh", "--init", "kaiming", "--dropout", "0.1", "--scaling", "2", "--leave-out", "0,1"]
        + ["--target-modules", '{"layers": "encoder.layer", "ffn": "output.dense"}']
        + ["--early-stopping-patience", "3", "--report-to", "tensorboard", "--init-from", "runs/a"]
        + ["--sample-prompts", "2"]
    )
    config = train_config(args)
    assert config.adapter == AdapterConfig(
        reduction_factor=12,
        placement="parallel",
        activation="tanh",
        init="kaiming",
        dropout=0.1,
        scaling=2,
        leave_out=[0, 1],
        target_modules={"layers": "encoder.layer", "ffn": "output.dense"},
    )
    assert (config.early_stopping_patience, config.report_to, config.init_from, config.sample_prompts) == (
        3,
        "tensorboard",
        "runs/a",
        2,
    )
    assert config.name == "x"
    quick_look = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--preset", "quick-look"])
    assert train_config(quick_look).adapter.bottleneck == 16  # the preset fills the width left on auto
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o", "--target-modules", "[1]"])
    with pytest.raises(AdapterError, match="train needs --data"):
        train_config(build_parser().parse_args(["train", "--out", "o"]))


# Early stopping --------------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_and_keeps_the_best(tiny_base, tmp_path, monkeypatch):
    real = loop.evaluate
    scripted = iter([0.50, 0.60, 0.55, 0.58, 0.59, 0.70, 0.80])  # best at the 2nd evaluation (step 4)
    seen = []  # the adapter's weights at each evaluation

    def evaluate(model, name, *args, **kwargs):
        metrics = real(model, name, *args, **kwargs)
        seen.append({k: p.detach().clone() for k, p in recipe.adapter_parameters(model, name).items()})
        return {**metrics, "accuracy": next(scripted), "val_loss": 1.0}

    monkeypatch.setattr(loop, "evaluate", evaluate)
    events = []
    result = train(quick(max_steps=40, early_stopping_patience=2), tmp_path, events.append)
    assert result.status == "completed" and result.stopped_early and result.steps == 8
    assert [e.step for e in events if e.kind == "eval"] == [2, 4, 6, 8]
    warning = next(e for e in events if e.kind == "warning" and e.info.get("stopped_early"))
    assert warning.message == (
        "Stopped early at step 8: validation accuracy did not improve for 2 evaluations; "
        "the best checkpoint (step 4) is kept."
    )
    assert result.metrics["accuracy"] == 0.60 and warning.message in result.warnings
    kept = saved_weights(tmp_path)
    assert all(torch.equal(kept[k], seen[1][k]) for k in kept)
    assert not all(torch.equal(kept[k], seen[3][k]) for k in kept)  # the last weights were not kept
    meta = read_adapter_config(tmp_path / "adapter")
    assert meta["training"]["stopped_early"] is True and meta["training"]["step"] == 4
    assert meta["training"]["total_steps"] == 8 and meta["training"]["status"] == "completed"
    assert events[-1].kind == "done" and events[-1].info["stopped_early"] and events[-1].info["best_step"] == 4
    assert not (tmp_path / "checkpoint").exists()  # a completed run has nothing to resume


# Resume ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_a_stopped_run_resumed_ends_where_an_uninterrupted_one_ends(tiny_base, tmp_path, grad_accum):
    # 27 batches of 16 an epoch: the run crosses an epoch boundary after the stop. The only counted
    # evaluation is the last, so the final weights are those the resumed steps made.
    config = quick(max_steps=32 // grad_accum, eval_every=100, grad_accum=grad_accum)
    whole = train(config, tmp_path / "whole")
    steps = []
    stopped = train(
        config,
        tmp_path / "part",
        lambda e: steps.append(e.step) if e.kind == "step" else None,
        should_stop=lambda: len(steps) >= 5,
    )
    assert stopped.status == "stopped" and stopped.steps == 5
    assert (tmp_path / "part" / "checkpoint" / "state.json").is_file()
    at_stop = saved_weights(tmp_path / "part")
    events = []
    resumed = train(config, tmp_path / "part", events.append, resume=True)
    assert resumed.status == "completed" and resumed.steps == whole.steps == 32 // grad_accum
    assert [e.step for e in events if e.kind == "step"][0] == 6
    training = next(e for e in events if e.kind == "status" and e.status == "training")
    assert training.info["resumed_at"] == 5 and "Resuming at step 5" in training.message
    final, expected = saved_weights(tmp_path / "part"), saved_weights(tmp_path / "whole")
    assert all(torch.allclose(final[k], expected[k], rtol=1e-6, atol=1e-8) for k in expected)
    assert not all(torch.allclose(at_stop[k], expected[k]) for k in expected)
    assert resumed.metrics == pytest.approx(whole.metrics)
    assert not (tmp_path / "part" / "checkpoint").exists()


def test_resume_refuses_a_missing_checkpoint_and_changed_settings(tiny_base, tmp_path):
    with pytest.raises(AdapterError, match="has no checkpoint to resume"):
        train(quick(), tmp_path / "none", resume=True)
    steps = []
    train(quick(), tmp_path / "r", lambda e: steps.append(e) if e.kind == "step" else None, lambda: len(steps) >= 2)
    with pytest.raises(AdapterError, match=r"other settings \(lr\)"):
        train(quick(lr=1e-3), tmp_path / "r", resume=True)


def test_cli_ctrl_c_then_resume(tiny_base, tmp_path, monkeypatch, capsys):
    real = loop.report_step

    def report_step(r, s):
        real(r, s)
        if s.step == 3:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop after this step

    monkeypatch.setattr(loop, "report_step", report_step)
    out = tmp_path / "cli-run"
    args = ["train", "--data", ROUTING, "--max-steps", "6", "--batch-size", "16", "--max-length", "48", "--out"]
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert main([*args, str(out), "--eval-every", "2"]) == 0
        assert "Resume it with: python -m adapter_core train --resume" in capsys.readouterr().out
        assert json.loads((out / "status.json").read_text())["status"] == "stopped"
        assert Run(out).resumable
        monkeypatch.setattr(loop, "report_step", real)
        assert main(["train", "--resume", "--out", str(out)]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "completed" and status["steps"] == 6 and "accuracy" in status["metrics"]
    steps = [e["step"] for e in Run(out).events() if e["kind"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]  # one curve across the stop
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "holds no run (no config.json)" in capsys.readouterr().err


# Continue training -----------------------------------------------------------------------------------
def test_init_from_continues_the_adapter_on_new_data(tiny_base, tmp_path):
    first = train(quick(adapter=AdapterConfig(bottleneck=8)), tmp_path / "first")
    subset = tmp_path / "two_labels.csv"
    rows = [line for line in Path(ROUTING).read_text().splitlines()[1:] if not line.endswith(",tech")]
    subset.write_text("text,label\n" + "\n".join(rows) + "\n")
    events = []
    config = quick(data=str(subset), name="again", init_from=str(tmp_path / "first"), lr=1e-12)
    result = train(config, tmp_path / "again", events.append)
    assert result.status == "completed"
    meta = read_adapter_config(tmp_path / "again" / "adapter")
    assert meta["labels"] == read_adapter_config(first.adapter_dir)["labels"] == ["billing", "orders", "tech"]
    assert meta["config"]["bottleneck"] == 8 and meta["train_config"]["adapter"]["bottleneck"] == 8
    before, after = saved_weights(tmp_path / "first"), saved_weights(tmp_path / "again")
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # it started from them
    note = next(e.message for e in events if e.kind == "warning" and "its own adapter settings" in e.message)
    assert "bottleneck 8" in note and "ignored" in note

    with pytest.raises(AdapterError, match=r"labels the adapter 'first' was not trained on: \['refunds'\]"):
        extra = tmp_path / "new_label.csv"
        extra.write_text(Path(ROUTING).read_text() + "".join(f"refund please {i},refunds\n" for i in range(5)))
        train(quick(data=str(extra), init_from=str(tmp_path / "first")), tmp_path / "bad")
    with pytest.raises(AdapterError, match="is a classification adapter; this run trains instruction"):
        train(quick(data=ORDERS, task="instruction", init_from=str(tmp_path / "first")), tmp_path / "bad2")


# Tracking --------------------------------------------------------------------------------------------
def test_tensorboard_writes_event_files_under_the_run(tiny_base, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(quick(report_to="tensorboard"), tmp_path)
    files = list((tmp_path / "tracking").rglob("events.out.tfevents.*"))
    assert files
    tags = set()
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/accuracy", "eval/val_loss"} <= tags


def test_a_missing_tracker_package_is_said_in_words(monkeypatch):
    monkeypatch.setitem(tracking._AVAILABLE, "mlflow", lambda: False)
    with pytest.raises(AdapterError, match="Tracking with mlflow needs the mlflow package: pip install mlflow"):
        TrainConfig(data="x.csv", report_to="mlflow").check()


# Instruction samples ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol_tokenizer():
    entry = CATALOG["smollm2-135m-instruct"]
    tokenizer = AutoTokenizer.from_pretrained(str(_converted_gguf(entry, embedded_path(entry))))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


def test_instruction_evaluations_carry_adapter_and_base_answers(monkeypatch, tmp_path, smol_tokenizer):
    model = tiny_llama(smol_tokenizer)
    ensure_state(model, model_family(model)).base_name = "tiny-llama"
    monkeypatch.setattr(recipe, "load_base", lambda name: Base(name, model, smol_tokenizer, "decoder"))
    calls, modes = [], []
    real = samples.generate_batch

    def generate(model, tokenizer, texts, names, max_new_tokens, system):
        calls.append(list(names))
        assert not model.training  # answers are greedy and dropout-free
        return real(model, tokenizer, texts, names, max_new_tokens, system)

    monkeypatch.setattr(samples, "generate_batch", generate)
    events = []
    run = TrainConfig(
        base="tiny-llama",
        data=ORDERS,
        task="instruction",
        name="orders",
        max_steps=3,
        eval_every=1,
        batch_size=8,
        sample_prompts=2,
        score_pairs=0,  # the end-of-run scores have their own tests (test_answer_scores.py)
    )
    hook = None

    def watch(event):
        nonlocal hook
        events.append(event)
        if event.kind == "status" and event.status == "training":  # the adapter is on the model now
            adapter = next(m for m in model.modules() if isinstance(m, BottleneckAdapter))
            hook = adapter.register_forward_hook(lambda m, i, o: modes.append((m.training, torch.is_grad_enabled())))

    train(run, tmp_path, watch)
    hook.remove()
    evals = [e for e in events if e.kind == "eval"]
    assert len(evals) == 3
    for e in evals:
        assert [set(s) for s in e.info["samples"]] == [{"prompt", "adapter", "base"}] * 2
        assert all(isinstance(s["adapter"], str) and isinstance(s["base"], str) for s in e.info["samples"])
    assert [s["prompt"] for s in evals[0].info["samples"]] == [s["prompt"] for s in evals[-1].info["samples"]]
    assert [s["base"] for s in evals[0].info["samples"]] == [s["base"] for s in evals[-1].info["samples"]]
    assert calls[0] == ["orders", "orders", None, None]  # adapter and base in one batch, once
    assert all(names == ["orders", "orders"] for names in calls[1:])
    assert all(training for training, grad in modes if grad)  # back in train mode after each evaluation


# Recorder, report, final metadata --------------------------------------------------------------------
def test_run_recorder_keeps_metrics_and_status_in_step(tmp_path):
    run = RunStore(tmp_path).create("r", quick().to_dict(), group="sweep-1")
    record = RunRecorder(run)
    record(Event("status", status="training", message="go"))
    assert run.status()["status"] == "training" and run.status()["message"] == "go"
    record(Event("step", step=1, loss=0.5))
    record(Event("done", status="completed", step=7, metrics={"accuracy": 0.9}, elapsed_s=3.0, examples_per_sec=5.0))
    status = run.status()
    assert (status["status"], status["steps"], status["metrics"], status["group"]) == (
        "completed",
        7,
        {"accuracy": 0.9},
        "sweep-1",
    )
    assert [e["kind"] for e in run.events()] == ["status", "step", "done"]


def test_classification_report_and_final_metadata_written_once(tiny_base, tmp_path, monkeypatch):
    writes = []
    real = loop.save_adapter

    def save(model, name, directory, extra=None):
        path = real(model, name, directory, extra=extra)
        writes.append((path / CONFIG_FILE).read_text())
        return path

    monkeypatch.setattr(loop, "save_adapter", save)
    events = []
    result = train(quick(), tmp_path, events.append)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == result.report == events[-1].info["report"]
    assert report["rows"] == 48 and report["labels"] == ["billing", "orders", "tech"]
    assert sum(map(sum, report["confusion"])) == 48 and sorted(report["order"]) == [0, 1, 2]
    assert (tmp_path / "adapter" / CONFIG_FILE).read_text() == writes[-1]  # nothing patched it afterwards
    final = json.loads(writes[-1])
    assert final["training"]["status"] == "completed" and final["training"]["total_steps"] == 4
    assert "out_of_scope" in final and all('"out_of_scope"' not in w for w in writes[:-1])
    assert result.trainable == sum(t.numel() for t in saved_weights(tmp_path).values())


# A shared base ---------------------------------------------------------------------------------------
def test_a_shared_base_gets_its_adapter_back_off(tiny_base, tmp_path, monkeypatch, minilm_tokenizer):
    base = tiny_bert(minilm_tokenizer)
    result = train(quick(), tmp_path / "ok", base=base)
    assert result.status == "completed" and list_adapters(base.model) == [] and tiny_base == []
    assert (tmp_path / "ok" / "adapter" / WEIGHTS_FILE).is_file()

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr("adapter_core.engine.train.run_loop", broken)
    with pytest.raises(RuntimeError):
        train(quick(), tmp_path / "failed", base=base)
    assert list_adapters(base.model) == []
    with pytest.raises(AdapterError, match="full fine-tune"):
        train(quick(mode="full"), tmp_path / "full", base=base)


def test_jobs_on_one_base_load_it_once_and_a_full_run_drops_it(tiny_base, tmp_path, monkeypatch, minilm_tokenizer):
    loads = []

    def load(name):
        loads.append(name)
        return tiny_bert(minilm_tokenizer, name)

    monkeypatch.setattr(jobs_module, "load_base", load)
    manager = JobManager(RunStore(tmp_path))
    try:
        first = manager.submit(quick(name="a"), group="g1")
        second = manager.submit(quick(name="b"), group="g1")
        for job in (first, second):
            manager.wait(job.id, 120)
            assert job.status == "completed", job.error
        assert loads == ["minilm"] and tiny_base == []  # one load, shared by both runs
        assert (
            first.group == second.group == "g1"
            and json.loads((first.run.dir / "status.json").read_text())["group"] == "g1"
        )
        full = manager.submit(quick(name="c", mode="full"))
        after = manager.submit(quick(name="d"))
        for job in (full, after):
            manager.wait(job.id, 120)
            assert job.status == "completed", job.error
        assert tiny_base == ["minilm"] and loads == ["minilm", "minilm"]  # the full run loaded its own
    finally:
        manager.close()


def test_the_job_manager_resumes_a_stopped_run(tiny_base, tmp_path, monkeypatch, minilm_tokenizer):
    monkeypatch.setattr(jobs_module, "load_base", lambda name: tiny_bert(minilm_tokenizer, name))
    manager = JobManager(RunStore(tmp_path))
    try:
        job = manager.submit(quick(max_steps=60, eval_every=100), owner="alice")
        while not any(e["kind"] == "step" and e["step"] >= 2 for e in job.events) and not job.finished.is_set():
            job.finished.wait(0.05)
        manager.stop(job.id, "alice")
        manager.wait(job.id, 120)
        assert job.status == "stopped" and job.run.resumable
        with pytest.raises(AdapterError, match="for you"):
            manager.resume(job.id, "bob")
        resumed_at = job.run.checkpoint_step
        again = manager.resume(job.id, "alice")
        assert again.resume and again.run.dir == job.run.dir
        history = [e["step"] for e in again.events if e["kind"] == "step"]
        assert history and max(history) <= resumed_at  # the curve so far, up to the checkpoint
        manager.wait(again.id, 300)
        assert again.status == "completed" and again.latest("done")["step"] == 60
        steps = [e["step"] for e in again.events if e["kind"] == "step"]
        assert steps == sorted(set(steps)) and steps[-1] == 60  # one curve, no step drawn twice
        status = again.run.status()
        assert status["trainable"] > 0 and status["stopped_early"] is False
        with pytest.raises(AdapterError, match="no checkpoint to resume"):
            manager.resume(job.id, "alice")
    finally:
        manager.close()


# Fit and time ------------------------------------------------------------------------------------------
def test_memory_estimate_measured_step_time_and_a_fit_warning(tiny_base, tmp_path, monkeypatch):
    import adapter_core.engine.memory_fit as fit

    monkeypatch.setattr(fit, "free_bytes", lambda device: 2**20)  # a machine with 1 MiB free
    events = []
    result = train(quick(max_steps=12, eval_every=100), tmp_path, events.append)
    info = next(e.info for e in events if e.kind == "status" and e.status == "training")
    memory = info["memory"]
    assert memory["total"] == memory["weights"] + memory["trainable_state"] + memory["activations"] > 2**20
    assert memory["batch_size"] == 16 and memory["trainable"] == result.trainable
    # Time left counts the run's evaluation as well as its steps (tests/test_run_time.py holds the model).
    assert info["seconds_per_step"] > 0 and info["estimated_seconds"] > 12 * info["seconds_per_step"]
    last_step = [e for e in events if e.kind == "step"][-1]
    assert last_step.step == 12 and last_step.eta_s > 0  # its evaluation is still to come
    warning = next(e.message for e in events if e.kind == "warning" and "memory" in e.message)
    assert "only 1 MiB is free" in warning and warning in result.warnings
    short = []
    train(quick(max_steps=4), tmp_path / "short", short.append)
    info = next(e.info for e in short if e.kind == "status" and e.status == "training")
    assert "seconds_per_step" not in info  # four steps measure themselves
