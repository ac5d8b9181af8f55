"""The studio's experiment views as plain handlers: the confusion matrix and per-class table of a run, the
token view of an instruction example, Compare's finished runs and trade-off scatter, the form-to-config
path with the new options, and sweeps (only the best published, and their quotas)."""

import json
import math
import re
import time
from pathlib import Path

import pytest
import torch
from helpers import wait_for

from adapter_core import AdapterConfig, AdapterError, adapter_parameters, add_adapter, load_base, save_adapter
from adapter_core.engine.batches import IGNORE, instruction_example
from adapter_core.engine.report import confusion, confusion_order, per_class
from adapter_core.engine.train import TrainResult
from studio import charts
from studio import data_view as dv
from studio import report_view as rv
from studio import runs_view as rs
from studio import settings as st
from studio import summary_view as sv
from studio import sweeps as sw
from studio import train_view as h
from studio.fit_view import fit_line
from studio.policy import Policy
from studio.quotas import owner_slots
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.text import time_left

LABELS = ["billing", "orders", "tech"]
SAMPLE = str(SAMPLES_DIR / "support_routing.csv")
SOURCE = {"path": SAMPLE, "name": "support_routing.csv", "ready": True, "rows": 480, "labels": LABELS}
SETTINGS = dict(bottleneck=16, placement="houlsby", activation="gelu", max_length=32, seed=1, auto=True)


def fixed_report() -> dict:
    """A report as the engine builds it, from a fixed set of predictions (tech mistaken for billing most)."""
    gold = [0] * 5 + [1] * 4 + [2] * 6
    pred = [0, 0, 0, 0, 1] + [1, 1, 1, 1] + [2, 2, 0, 0, 0, 1]
    matrix = confusion(gold, pred, 3)
    return {
        "labels": LABELS,
        "per_class": per_class(gold, pred, LABELS),
        "confusion": matrix,
        "order": confusion_order(matrix),
        "misclassified": [{"text": "refund <b>now</b>", "true": "tech", "predicted": "billing", "confidence": 0.91}],
        "rows": len(gold),
    }


# What a run learned ---------------------------------------------------------------------------------------
def test_confusion_heatmap_holds_the_matrix_in_the_report_order():
    report = fixed_report()
    assert report["order"][:2] == [2, 0]  # tech -> billing, the biggest confusion, first
    fig = rv.confusion_figure(report)
    heat = fig.data[0]
    order = report["order"]
    names = [LABELS[i] for i in order]
    assert list(heat.x) == names and list(heat.y) == names  # predicted across, true down, same order
    assert [list(row) for row in heat.text] == [[report["confusion"][i][j] for j in order] for i in order]
    assert heat.text[0][1] == 3 and heat.texttemplate == "%{text}"  # counts in the cells: 3 tech rows -> billing
    assert fig.layout.yaxis.autorange == "reversed"  # the first class at the top
    shares = [list(row) for row in heat.z]
    assert shares[0] == pytest.approx([2 / 6, 3 / 6, 1 / 6])  # colour: the share of the true label's rows


def test_labels_are_escaped_and_shortened_in_the_matrix():
    matrix = [[1, 0], [0, 1]]
    fig = charts.confusion(matrix, ["<img src=x>", "a" * 60], None)
    assert fig.data[0].x[0] == "&lt;img src=x&gt;" and len(fig.data[0].x[1]) == 28


def test_per_class_table_rows_follow_the_order_then_the_averages():
    report = fixed_report()
    table = rv.per_class_table(report)
    assert table["label"].tolist() == ["tech", "billing", "orders", "(average over labels)", "(average over rows)"]
    tech = table.iloc[0]
    assert (tech["precision"], tech["recall"], tech["support"]) == (1.0, round(2 / 6, 3), 6)
    billing = table.iloc[1]
    assert billing["precision"] == round(4 / 7, 3) and billing["recall"] == 0.8 and billing["support"] == 5
    assert table.iloc[-1]["support"] == 15
    stacked = rv.per_class_table(report, adapter="router")
    assert stacked.columns[0] == "adapter" and set(stacked["adapter"]) == {"router"}
    wrong = rv.misclassified_table(report)
    assert wrong.to_dict("records") == [
        {"text": "refund <b>now</b>", "true": "tech", "predicted": "billing", "confidence": 0.91}
    ]
    assert "10 of 15 right, 5 wrong" in rv.report_summary(report)


def test_the_run_report_comes_from_the_done_event_or_report_json(tmp_path):
    studio = Studio(tmp_path, policy=Policy.local())
    run = studio.jobs.store.create("r", {"name": "r"})
    assert rv.run_report(run) is None
    report = fixed_report()
    assert rv.run_report(run, {"kind": "done", "info": {"report": report}}) == report
    (run.dir / "report.json").write_text(json.dumps(report))
    assert studio.run_report(run.id) == report
    studio.jobs.close()


def test_samples_table_puts_the_base_beside_the_adapter():
    samples = [{"prompt": "Where is my parcel?", "adapter": "It ships today.", "base": "I am an AI."}]
    assert rv.samples_table(samples).values.tolist() == [["Where is my parcel?", "I am an AI.", "It ships today."]]


# The token view --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol_tokenizer():
    return load_base("smollm2-135m-instruct").tokenizer


def test_token_view_marks_what_training_learns(smol_tokenizer):
    info = dv.inspect_data(str(SAMPLES_DIR / "orders_sft.csv"), "instruction", tokenizer=smol_tokenizer, max_length=48)
    tokens = info["tokens"]
    kinds = {kind for _, kind in tokens}
    assert kinds <= set(dv.TOKEN_LEGEND.values()) and set(kinds) <= set(dv.TOKEN_COLORS)
    loss = dv.TOKEN_LEGEND["loss"]
    # The same example through the training code: the loss tokens are those with a label.
    import pandas as pd

    first = pd.read_csv(SAMPLES_DIR / "orders_sft.csv").iloc[0]
    ids, labels = instruction_example(smol_tokenizer, first["instruction"], first["response"], None, None, 48)
    assert sum(kind == loss for _, kind in tokens) == sum(label != IGNORE for label in labels)
    assert len([t for t in tokens if t[1] != dv.TOKEN_LEGEND["cut"]]) == len(ids)
    assert any(kind == dv.TOKEN_LEGEND["cut"] for _, kind in tokens)  # 48 tokens cut this example
    classification = dv.inspect_data(SAMPLE, "classification", tokenizer=smol_tokenizer, max_length=48)
    assert classification["tokens"] is None  # no token view for classification data


# Compare -> Runs ----------------------------------------------------------------------------------------------
def finished_run(studio, name, task="classification", mode="adapter", accuracy=0.8, trainable=1000, seconds=10.0,
                 status="completed", bottleneck=16, owner=None):  # fmt: skip
    config = {"name": name, "task": task, "mode": mode, "adapter": {"bottleneck": bottleneck, "placement": "houlsby"}}
    run = studio.jobs.store.create(name, config, owner=owner)
    run.append_event({"kind": "status", "status": "training", "info": {"trainable": trainable}})
    run.append_event({"kind": "step", "step": 1, "loss": 1.0})
    run.append_event({"kind": "step", "step": 2, "loss": 0.5})
    metrics = {"accuracy": accuracy, "val_loss": 0.5} if task == "classification" else {"val_loss": 1.2}
    run.set_status(status, metrics=metrics, train_seconds=seconds, steps=2)
    return run


def test_compare_runs_scatter_has_one_point_per_run_on_a_log_axis(tmp_path):
    studio = Studio(tmp_path, policy=Policy(public=True))
    me = "anon:me"
    finished_run(studio, "r16", trainable=150_000, accuracy=0.81, owner=me)
    finished_run(studio, "head", mode="head", trainable=1_155, accuracy=0.52, seconds=4.0, owner=me)
    finished_run(studio, "full", mode="full", trainable=22_700_000, accuracy=0.9, seconds=120.0, owner=me)
    finished_run(studio, "chat", task="instruction", owner=me)
    finished_run(studio, "going", status="training", owner=me)  # not finished: left out
    finished_run(studio, "someone-else", owner="anon:other")  # another visitor's: left out
    view = rs.compare_runs(studio, me)
    table = view["table"]
    assert sorted(table["name"]) == ["chat", "full", "head", "r16"]
    assert dict(zip(table["name"], table["mode"], strict=True))["full"] == "full fine-tuning"
    assert table.loc[table["name"] == "full", "bottleneck"].isna().all()  # no adapter shape for a baseline
    fig = view["tradeoff"]
    assert fig.layout.xaxis.type == "log"
    drawn = [t for t in fig.data if t.text]  # the rest are the legend's markers, one per mode
    points = {(n, x, y) for trace in drawn for n, x, y in zip(trace.text, trace.x, trace.y, strict=True)}
    assert points == {("r16", 150_000, 0.81), ("head", 1_155, 0.52), ("full", 22_700_000, 0.9)}
    assert {trace.name for trace in fig.data if trace.showlegend is not False} == {
        "adapter",
        "head only",
        "full fine-tuning",
    }
    sizes = {t.name: t.marker.size[0] for t in drawn}
    assert sizes["full fine-tuning"] > sizes["adapter"] > sizes["head only"]  # marker size: training time
    assert sorted(view["timing"].data[0].x) == [4.0, 10.0, 120.0]
    curves = rs.run_curves(studio, me, view["choices"][:2])
    assert len(curves.data) == 2 and list(curves.data[0].x) == [1, 2]
    with pytest.raises(AdapterError, match="No run"):
        rs.run_curves(studio, me, [studio.jobs.store.list()[0].id])  # the other visitor's newest run
    studio.jobs.close()


def test_one_adapter_keeps_one_colour_on_every_compare_chart(tmp_path):
    from studio_fixtures import publish_random

    from studio import comparison as c

    studio = Studio(tmp_path)
    publish_random(studio, "minilm", "support_routing-r16", "classification", ["a", "b"], seed=1)
    published = finished_run(studio, "r16", trainable=150_000, accuracy=0.81)
    published.set_status("completed", library_name="support_routing-r16")  # the run that made it
    finished_run(studio, "head", mode="head", trainable=1_155, accuracy=0.52)
    finished_run(studio, "full", mode="full", trainable=22_700_000, accuracy=0.9)
    view = rs.compare_runs(studio, None)
    scatter = {n: col for t in view["tradeoff"].data if t.text for n, col in zip(t.text, t.marker.color, strict=True)}
    timing = dict(zip(view["timing"].data[0].text, view["timing"].data[0].marker.color, strict=True))
    assert scatter == timing and len(set(scatter.values())) == 3, scatter  # three names, three colours
    names = {r.id: r.config()["name"] for r in studio.jobs.store.list()}
    for order in (view["choices"], view["choices"][::-1]):  # the picked order moves no colour
        lines = {names[t.name]: t.line.color for t in rs.run_curves(studio, None, order).data}
        assert lines == {"head": scatter["head"], "full": scatter["full"], "r16": scatter["r16"]}, lines
    # The run published as the library adapter: one colour for both, on the adapters' curves too.
    assert scatter["r16"] == charts.colour_map(["full", "head", "support_routing-r16"])["support_routing-r16"]
    [adapter] = c.compare_curves(studio, None, ["support_routing-r16"]).data
    assert adapter.line.color == scatter["r16"]
    studio.jobs.close()


def test_the_trade_off_names_stay_inside_the_plot():
    points = [
        {"name": "support_routing-head", "mode": "head", "trainable": 1_155, "accuracy": 1.0, "seconds": 4.0},
        {"name": "support_routing-r16", "mode": "adapter", "trainable": 150_000, "accuracy": 0.8, "seconds": 9.0},
        {"name": "support_routing-full", "mode": "full", "trainable": 22_700_000, "accuracy": 0.9, "seconds": 99},
    ]
    fig = charts.tradeoff(points)
    sides = {t.text[0]: t.textposition[0] for t in fig.data if t.text}
    # The leftmost name reads rightwards from its point, the rightmost leftwards: neither runs past an edge.
    assert sides == {
        "support_routing-head": "top right", "support_routing-r16": "top center", "support_routing-full": "top left"
    }  # fmt: skip
    low, high = fig.layout.xaxis.range
    assert low < math.log10(1_155) and high > math.log10(22_700_000)  # room for the biggest markers
    assert fig.layout.yaxis.range[1] >= 1.2  # and for a name above an accuracy of 1


# The form -> TrainConfig --------------------------------------------------------------------------------------
def test_the_form_builds_a_nested_adapter_config():
    settings = {**SETTINGS, "init": "houlsby", "scaling": 2.0, "leave_out": "0, 3 ,3", "mode": "Adapter"}
    config = st.train_config("minilm", SOURCE, "classification", {"text": "text"}, "", {**settings, "patience": 2})
    assert config.adapter == AdapterConfig(bottleneck=16, init="houlsby", scaling=2.0, leave_out=[0, 3])
    assert config.name == "support_routing-r16" and config.early_stopping_patience == 2
    assert config.lr is None and config.batch_size is None  # auto: the engine chooses
    head = st.train_config("minilm", SOURCE, "classification", {}, "x", {**SETTINGS, "mode": "Head only"})
    assert head.mode == "head" and head.adapter.scaling == 1.0
    with pytest.raises(AdapterError, match="Layers to leave out are whole numbers"):
        st.adapter_config({**SETTINGS, "leave_out": "first"})
    with pytest.raises(AdapterError, match="Mode must be one of Adapter, Head only, Full fine-tuning"):
        st.mode_value("everything")
    with pytest.raises(AdapterError, match="patience is a whole number"):
        st.patience(2.5)
    assert st.choices_for(st.form_settings()["report_to"], public=True) == [
        ("None", "none"),
        ("TensorBoard", "tensorboard"),
    ]


def test_estimate_and_summary_follow_the_mode(tmp_path):
    studio = Studio(tmp_path, policy=Policy.local())
    assert "**1,155** trainable parameters: the classification head alone" in h.estimate(
        studio, "minilm", 64, "houlsby", 3, {"mode": "Head only"}
    )
    full = h.estimate(studio, "minilm", 64, "houlsby", 3, {"mode": "Full fine-tuning"})
    assert "every weight of the base" in full and "not kept as an adapter" in full
    fewer = h.estimate(studio, "minilm", 16, "houlsby", 3, {"leave_out": "0, 1"})
    assert "**102,659**" in fewer  # 8 of 12 slots: 8 x (2*384*16 + 16 + 384) + 3 x 385
    summary = sv.run_summary(studio, "minilm", SOURCE, {**SETTINGS, "mode": "Full fine-tuning", "patience": 3})
    assert "Full fine-tuning:" in summary and "Stops early after 3 evaluations" in summary
    studio.jobs.close()


def test_on_zero_gpu_the_summary_says_how_much_gpu_quota_the_run_needs(tmp_path, monkeypatch):
    import types

    from adapter_core.engine import gpu_seconds
    from studio.text import duration

    zero = types.SimpleNamespace(kind="zero-gpu", trains_on_cpu=False)
    monkeypatch.setattr(sv, "hardware", lambda: zero)
    studio = Studio(tmp_path, policy=Policy.local())
    summary = sv.run_summary(studio, "minilm", SOURCE, SETTINGS)
    steps = sv.plan(studio, "minilm", SOURCE, SETTINGS).total_steps
    needs = gpu_seconds("minilm", steps)
    assert 10 < needs < 10 + steps  # a worker's start, and MiniLM's 15 ms steps with headroom
    assert f"This run needs about {duration(needs)} of your daily GPU quota" in summary, summary
    assert gpu_seconds("someone/unmeasured-model", steps) is None  # said as "its first slices measure"
    studio.jobs.close()


def test_the_summary_says_the_steps_the_run_makes_with_the_public_caps_and_its_own_validation(tmp_path):
    """Start trains what the summary says: the run's own plan (`TrainConfig.plan`), with the public caps that
    Start adds, on the rows the run trains on."""
    public = Studio(tmp_path / "public", policy=Policy(public=True))
    fixed = {**SETTINGS, "auto": False, "batch_size": 8, "epochs": 3}
    big = {**SOURCE, "rows": 20_000}  # 18,000 train rows (a tenth held out): 2,250 steps an epoch at batch 8
    summary = sv.run_summary(public, "minilm", big, fixed)
    assert "Run: 2000 optimizer steps: batch 8, 3 epochs of 2250 steps" in summary, summary
    assert (
        "It stops at step 2,000 of the 6,750 of its 3 epochs: this studio ends every run after 2,000 steps" in summary
    )
    timed = Studio(tmp_path / "timed", policy=Policy(public=True, max_steps=10**6, max_seconds=60.0))
    summary = sv.run_summary(timed, "minilm", big, fixed)  # its 6,750 steps take longer than a minute here
    assert "It stops after 1 min of training, before its last steps" in summary and " left" not in summary, summary
    timed.jobs.close()
    local = Studio(tmp_path / "local", policy=Policy.local())
    assert "Run: 6750 optimizer steps" in sv.run_summary(local, "minilm", big, fixed)
    assert "It stops at step" not in sv.run_summary(local, "minilm", big, fixed)
    one = {**fixed, "epochs": 1, "batch_size": 16}
    assert "Run: 27 optimizer steps" in sv.run_summary(local, "minilm", SOURCE, one)  # 432 of 480 rows train
    hub = {**SOURCE, "val_path": SAMPLE, "val_rows": 120}  # a Hub dataset's own validation split
    assert "Run: 30 optimizer steps" in sv.run_summary(local, "minilm", hub, one)  # all 480 train
    public.jobs.close()
    local.jobs.close()


def test_a_public_run_trains_the_plan_its_summary_showed(tmp_path):
    public = Studio(tmp_path, policy=Policy(public=True, anonymous_heavy=True, max_steps=3))
    summary = sv.run_summary(public, "minilm", SOURCE, SETTINGS)
    shown = re.search(r"Run: (.*?);", summary)[1]
    assert shown.startswith("3 optimizer steps") and "It stops at step 3 of the" in summary, summary
    job_id, _ = h.start_training(public, "hf:alice", "minilm", SOURCE, "classification", {}, "capped", SETTINGS)
    job = public.jobs.get(job_id, owner="hf:alice")
    public.jobs.wait(job_id, 300)
    started = next(e for e in job.events if e["kind"] == "status" and e.get("status") == "training")
    assert shown in started["message"], (shown, started["message"])
    public.jobs.close()


def test_memory_before_start_and_the_measured_time_of_a_run(tmp_path, monkeypatch):
    studio = Studio(tmp_path, policy=Policy.local())
    summary = sv.run_summary(studio, "minilm", SOURCE, SETTINGS)
    assert re.search(r"Memory: about [\d.]+ MiB \(weights [\d.]+ MiB, training state", summary), summary
    assert "⚠ This run needs" not in summary
    # With the Data tab's token counts, the figures are the run's own: its longest row, its mean length.
    measured = sv.run_summary(studio, "minilm", {**SOURCE, "tokens": {"mean": 12.0, "longest": 20}}, SETTINGS)
    assert "and rows of up to 20 tokens." in measured and "at most 32 tokens" in summary
    assert re.search(r"; about \d+ s left\.", summary)  # the whole run's time, before Start...
    assert " left" not in sv.run_summary(studio, "minilm", SOURCE, SETTINGS, running=True)  # ...not beside the run's
    total = lambda text: float(re.search(r"Memory: about ([\d.]+) MiB", text)[1])  # noqa: E731
    assert total(measured) < total(summary)
    monkeypatch.setattr("adapter_core.engine.memory_fit.free_bytes", lambda device: 2**20)  # 1 MiB free
    assert "⚠ This run needs about" in sv.run_summary(studio, "minilm", SOURCE, SETTINGS)
    info = {"memory": {"total": 3 * 2**30, "weights": 2**30, "trainable_state": 2**29, "activations": 2**29},
            "estimated_seconds": 150.0, "seconds_per_step": 1.5}  # fmt: skip
    assert fit_line(info) == (  # the time is the progress line's one estimate, "about N min left"
        "memory about 3.00 GiB (weights 1.00 GiB, training state 512 MiB, activations 512 MiB)"
    )
    studio.jobs.close()


def test_after_a_run_here_the_estimate_before_start_is_at_its_measured_speed(tmp_path):
    """The plan's CPU figure is one machine's: once a base has trained here, the estimate before Start is
    the same whole-run model at the speed that run measured (engine/machine_speed.py)."""
    from adapter_core.engine.machine_speed import per_token_of
    from adapter_core.engine.train import TrainConfig

    studio = Studio(tmp_path, policy=Policy.local())
    assert studio.seconds_per_token("minilm") is None  # nothing trained here yet: the plan's figure
    plan = sv.plan(studio, "minilm", SOURCE, SETTINGS)
    at_plan = sv.whole_run(plan, 480, "classification", SETTINGS)
    assert time_left(at_plan) in sv.run_summary(studio, "minilm", SOURCE, SETTINGS)
    config = TrainConfig(data=SAMPLE, name="timed", max_steps=12, batch_size=8, max_length=32)
    job = studio.jobs.submit(config)
    studio.jobs.wait(job.id, 300)
    measured = studio.seconds_per_token("minilm")
    assert measured == per_token_of(studio.jobs.store.get(job.id)) > 0
    at_measured = sv.whole_run(plan, 480, "classification", SETTINGS, measured=measured)
    assert at_measured / at_plan == pytest.approx(
        measured / (plan.estimated_seconds / (plan.total_steps * plan.batch_size * 24))
    )
    assert time_left(at_measured) in sv.run_summary(studio, "minilm", SOURCE, SETTINGS)
    assert studio.seconds_per_token("smollm2-135m-instruct") is None  # another base keeps the plan's figure
    studio.jobs.close()


# Sweeps ---------------------------------------------------------------------------------------------------------
def fake_train(accuracy: dict[int, float]):
    """Stands in for `train`: saves a small adapter with the config's shape and reports the accuracy given
    for its bottleneck (so which run is best is known), without training."""

    def train(config, out_dir, on_event=lambda e: None, should_stop=lambda: False, base=None, resume=False, lease=None):
        from adapter_core.engine.train import Event

        base = base or load_base(config.base)
        name = config.name
        add_adapter(base.model, name, config.adapter, task="classification", labels=LABELS)
        with torch.no_grad():
            for p in adapter_parameters(base.model, name).values():
                p.normal_(0, 0.01)
        on_event(Event("status", status="training", info={"trainable": 1000 * config.adapter.bottleneck}))
        save_adapter(base.model, name, Path(out_dir) / "adapter", extra={"base_model": config.base})
        from adapter_core.inject import remove_adapter

        remove_adapter(base.model, name)
        metrics = {"accuracy": accuracy[config.adapter.bottleneck], "val_loss": 1 - accuracy[config.adapter.bottleneck]}
        on_event(Event("done", status="completed", metrics=metrics, step=3))
        return TrainResult("completed", Path(out_dir) / "adapter", metrics, 3, 1.5, 10.0)

    return train


def held_train(
    config, out_dir, on_event=lambda e: None, should_stop=lambda: False, base=None, resume=False, lease=None
):
    """Stands in for `train`: holds the trainer until it is told to stop (a run that stays active)."""
    while not should_stop():
        time.sleep(0.02)
    return TrainResult("stopped", Path(out_dir) / "adapter", {}, 0, 0.0, 0.0)


def wait_sweep(studio, sweep, timeout=120):
    assert studio.jobs.sweeps.wait(sweep.id, timeout), "the sweep did not end"


def test_a_sweep_publishes_only_its_best_adapter(tmp_path, monkeypatch):
    monkeypatch.setattr("adapter_core.engine.jobs.train", fake_train({8: 0.7, 16: 0.9, 32: 0.8}))
    studio = Studio(tmp_path, policy=Policy.local())
    configs = sw.sweep_grid(
        studio, "minilm", SOURCE, "classification", {}, "routing", SETTINGS, ["8", "16", 32], ["2e-3"]
    )
    assert [c.adapter.bottleneck for c in configs] == [8, 16, 32]
    assert all(c.early_stopping_patience == 2 and c.lr == 2e-3 for c in configs)
    assert all("." not in c.name for c in configs)  # run names are folder-safe
    sweep, _ = studio.submit_sweep(configs, "routing")
    wait_sweep(studio, sweep)
    assert studio.library.names() == ["routing-best"]  # one adapter in the library: the best
    best = studio.library.get("routing-best")
    assert best.meta["config"]["bottleneck"] == 16
    jobs = [studio.jobs.get(i) for i in sweep.run_ids]
    assert all(j.run.has_adapter for j in jobs)  # the others stay in their run folders
    assert [j.run.status().get("library_name") for j in jobs] == [None, "routing-best", None]
    table, text = sw.sweep_results(studio, None, sweep.id)
    assert table["bottleneck"].tolist() == [16, 32, 8]  # best first
    assert table["accuracy"].tolist() == [0.9, 0.8, 0.7]
    assert "3 of 3 runs ended" in text and "'routing-best'" in text
    studio.jobs.close()


def test_a_restarted_studio_finishes_the_sweep_and_publishes_its_best_once(tmp_path, monkeypatch):
    trained = fake_train({8: 0.7, 16: 0.9})

    def train(config, *args, **kwargs):  # the second run is still training when the app restarts
        return (held_train if config.adapter.bottleneck == 16 else trained)(config, *args, **kwargs)

    monkeypatch.setattr("adapter_core.engine.jobs.train", train)
    studio = Studio(tmp_path, policy=Policy.local())
    configs = sw.sweep_grid(studio, "minilm", SOURCE, "classification", {}, "routing", SETTINGS, ["8", "16"], ["2e-3"])
    sweep, _ = studio.submit_sweep(configs, "routing")
    first, second = (studio.jobs.get(i) for i in sweep.run_ids)
    wait_for(lambda: first.status == "completed" and second.status == "loading")
    assert studio.library.names() == []

    monkeypatch.setattr("adapter_core.engine.runs.BOOT_ID", "a-later-boot")  # a new process, same home
    restarted = Studio(tmp_path, policy=Policy.local())
    assert restarted.library.names() == ["routing-best"]  # the best of what finished, published at start-up
    assert restarted.library.get("routing-best").meta["config"]["bottleneck"] == 8
    table, text = sw.sweep_results(restarted, None, None)  # the newest sweep, known across the restart
    assert table["run"].tolist() == [c.name for c in configs] and table["status"].tolist() == [
        "completed",
        "interrupted",
    ]
    assert "2 of 2 runs ended" in text and "'routing-best'" in text
    studio.jobs.close()  # the earlier process's run ending after all publishes nothing more
    restarted.jobs.close()
    assert restarted.library.names() == ["routing-best"]


def test_a_single_run_is_still_published_and_a_full_fine_tune_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr("adapter_core.engine.jobs.train", fake_train({16: 0.9}))
    studio = Studio(tmp_path, policy=Policy.local())
    one = st.train_config("minilm", SOURCE, "classification", {}, "single", SETTINGS)
    job, _ = studio.submit(one)
    studio.jobs.wait(job.id, 60)
    assert studio.library.names() == ["single"]
    full = st.train_config("minilm", SOURCE, "classification", {}, "full", {**SETTINGS, "mode": "Full fine-tuning"})
    job, _ = studio.submit(full)
    studio.jobs.wait(job.id, 60)
    assert studio.library.names() == ["single"] and "keeps no adapter" in job.latest("published")["message"]
    studio.jobs.close()


def test_sweep_quotas_in_public_mode(tmp_path, monkeypatch):
    monkeypatch.setattr("adapter_core.engine.jobs.train", held_train)
    monkeypatch.setattr("adapter_core.engine.jobs.load_base", lambda name: None)
    policy = Policy(public=True, max_jobs_per_owner=2, max_queue=6)
    studio = Studio(tmp_path, policy=policy)
    grid = lambda b, lr: sw.sweep_grid(studio, "minilm", SOURCE, "classification", {}, "s", SETTINGS, b, lr)  # noqa: E731
    with pytest.raises(AdapterError, match=r"A sweep is at most 4 runs in this studio; you asked for 100 \(10 bott"):
        grid([str(b) for b in range(4, 44, 4)], [f"{i}e-4" for i in range(1, 11)])
    with pytest.raises(AdapterError, match="A sweep is at most 4 runs"):
        studio.submit_sweep(
            [st.train_config("minilm", SOURCE, "classification", {}, f"x{i}", SETTINGS) for i in range(5)],
            "x",
            "hf:a",
        )
    with pytest.raises(AdapterError, match="A sweep needs a Hugging Face sign-in in this public studio"):
        studio.submit_sweep(grid(["8", "16"], ["1e-3"]), "anon", "anon:visitor")
    with pytest.raises(AdapterError, match="Learning rates are numbers"):
        grid(["16"], ["fast"])
    sweep, notes = studio.submit_sweep(grid(["8", "16"], ["1e-3", "2e-3"]), "s", "hf:a")
    assert "each of its 4 runs trains at most 7.5 minutes" in " ".join(notes)
    assert all(studio.jobs.get(i).config.max_seconds == 450 for i in sweep.run_ids)
    assert owner_slots(studio, "hf:a") == (1, 1)  # the sweep counts as one run
    with pytest.raises(AdapterError, match="You already have a sweep queued or running"):
        studio.submit_sweep(grid(["8"], ["1e-3"]), "again", "hf:a")
    job, _ = studio.submit(st.train_config("minilm", SOURCE, "classification", {}, "solo", SETTINGS), "hf:a")
    with pytest.raises(AdapterError, match=r"You already have 2 runs queued or running \(the limit is 2; a sweep co"):
        studio.submit(st.train_config("minilm", SOURCE, "classification", {}, "more", SETTINGS), "hf:a")
    with pytest.raises(AdapterError, match="queue has room for 1 more runs; this sweep is 2"):
        studio.submit_sweep(grid(["8", "16"], ["1e-3"]), "b", "hf:b")
    with pytest.raises(AdapterError, match="No sweep"):
        sw.sweep_results(studio, "hf:b", sweep.id)  # another visitor's sweep does not exist for them
    sw.stop_sweep(studio, "hf:a", sweep.id)
    studio.jobs.stop(job.id, owner="hf:a")
    studio.jobs.close()


def public_with_upload(tmp_path) -> tuple[Studio, Path]:
    """A public studio and a visitor's uploaded copy of the routing sample."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    data = uploads / "routing.csv"
    data.write_bytes(Path(SAMPLE).read_bytes())
    # The operator opened heavy work (training on one's own data) to visitors who are not signed in.
    studio = Studio(tmp_path / "home", policy=Policy(public=True, anonymous_heavy=True))
    studio.upload_roots.append(uploads)
    return studio, data


def test_resume_from_past_runs_goes_on_and_replaces_its_adapter(tmp_path):
    """Stop a visitor's run after an evaluation, show it under Past runs, resume it (only its owner may),
    and the finished run replaces the adapter the stop published instead of adding a second one."""
    studio, data = public_with_upload(tmp_path)
    source = {**SOURCE, "path": str(data)}
    settings = {**SETTINGS, "auto": False, "lr": 2e-3, "epochs": 1.0, "batch_size": 8}
    config = st.train_config("minilm", source, "classification", {}, "resumed", settings)
    config.max_steps, config.eval_every = 24, 6
    job, _ = studio.submit(config, "alice")
    while not any(e["kind"] == "eval" for e in job.events) and not job.finished.is_set():
        time.sleep(0.05)
    studio.jobs.stop(job.id, "alice")
    studio.jobs.wait(job.id, 120)
    assert job.status == "stopped" and studio.library.names(owner="alice") == ["resumed"]
    shown = h.show_past_run(studio, "alice", job.id)
    assert shown["resumable"] and f"checkpoint at step {job.run.checkpoint_step}" in shown["text"]
    assert shown["report"] is not None  # a stopped classification run still has its per-class report
    with pytest.raises(AdapterError, match="No run"):
        h.resume_run(studio, "bob", job.id)  # another visitor's run is as good as missing
    again = studio.jobs.get(h.resume_run(studio, "alice", job.id), "alice")
    with pytest.raises(AdapterError, match="already queued or training"):
        h.resume_run(studio, "alice", job.id)
    studio.jobs.wait(again.id, 300)
    assert again.status == "completed" and again.latest("done")["step"] == 24
    assert studio.library.names(owner="alice") == ["resumed"]  # replaced, not "resumed-2"
    training = studio.library.get("resumed", "alice").training
    assert training["status"] == "completed" and training["total_steps"] == 24
    assert not h.show_past_run(studio, "alice", job.id)["resumable"]  # a completed run has nothing to resume
    studio.jobs.close()


def test_resume_needs_the_runs_data_file_still_there(tmp_path, monkeypatch):
    monkeypatch.setattr("adapter_core.engine.jobs.train", held_train)
    monkeypatch.setattr("adapter_core.engine.jobs.load_base", lambda name: None)
    studio, data = public_with_upload(tmp_path)
    config = st.train_config("minilm", {**SOURCE, "path": str(data)}, "classification", {}, "gone", SETTINGS)
    job, _ = studio.submit(config, "alice")
    studio.jobs.stop(job.id, "alice")
    studio.jobs.wait(job.id, 60)
    (job.run.dir / "checkpoint").mkdir()
    (job.run.dir / "checkpoint" / "state.json").write_text('{"step": 3}')  # as if it had stopped after an eval
    data.unlink()
    with pytest.raises(AdapterError, match="no longer on the server") as e:
        h.resume_run(studio, "alice", job.id)
    assert str(data.parent) not in str(e.value)
    studio.jobs.close()


def test_continue_from_takes_a_library_adapter_by_name_never_a_path(tmp_path, monkeypatch):
    monkeypatch.setattr("adapter_core.engine.jobs.train", held_train)
    monkeypatch.setattr("adapter_core.engine.jobs.load_base", lambda name: None)
    studio = Studio(tmp_path, policy=Policy(public=True))
    _, folder = tiny_adapter_for(tmp_path)
    studio.library.publish(folder, "mine", owner="alice")
    studio.library.publish(folder, "theirs", owner="bob")
    settings = {**SETTINGS, "continue_from": "mine"}
    assert "Continues your adapter 'mine' on this data" in sv.run_summary(studio, "minilm", SOURCE, settings)
    job_id, _ = h.start_training(studio, "alice", "minilm", SOURCE, "classification", {}, "more", settings)
    job = studio.jobs.get(job_id, "alice")
    assert job.config.init_from == str(studio.library.get("mine", "alice").path)
    studio.jobs.stop(job_id, "alice")
    for name in ("theirs", "../theirs", str(folder)):  # another visitor's adapter, or a server path
        with pytest.raises(AdapterError, match="No adapter named"):
            h.start_training(
                studio, "alice", "minilm", SOURCE, "classification", {}, "x", {**SETTINGS, "continue_from": name}
            )
    studio.jobs.close()


def tiny_adapter_for(tmp_path):
    """A saved MiniLM-shaped classification adapter with the routing labels (weights as initialised)."""
    base = load_base("minilm")
    add_adapter(base.model, "seed", AdapterConfig(bottleneck=8), task="classification", labels=LABELS)
    return base, save_adapter(base.model, "seed", tmp_path / "seed", extra={"base_model": "minilm"})
