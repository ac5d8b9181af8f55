"""Sweeps: the grid's configs, four tiny runs on one loaded base ranked best first, a stop request, and
`python -m adapter_core sweep` (the engine's sweep executor in-process) with Ctrl-C and its error lines."""

import json
import signal
import sys

import pytest
from helpers import ROUTING, tiny_model
from transformers import AutoTokenizer

from adapter_core import AdapterConfig, AdapterError, list_adapters, load_adapter
from adapter_core.catalog import CATALOG, Base, embedded_path
from adapter_core.cli import main
from adapter_core.cli import sweep as cli_sweep
from adapter_core.engine.metrics import rank_key
from adapter_core.engine.runs import Run
from adapter_core.engine.sweep import lr_tag, run_sweep, sweep_configs
from adapter_core.engine.train import TrainConfig
from adapter_core.placement import model_family
from adapter_core.state import ensure_state


def test_sweep_configs_make_the_grid():
    base = TrainConfig(data=ROUTING, name="route", adapter=AdapterConfig(bottleneck=64, dropout=0.1), max_steps=9)
    configs = sweep_configs(base, [16, 64], [1e-3, 2.5e-3], patience=3)
    assert [c.name for c in configs] == [
        "route-r16-lr1e-3",
        "route-r16-lr2p5e-3",
        "route-r64-lr1e-3",
        "route-r64-lr2p5e-3",
    ]
    assert [(c.adapter.bottleneck, c.lr) for c in configs] == [(16, 1e-3), (16, 2.5e-3), (64, 1e-3), (64, 2.5e-3)]
    assert all(c.early_stopping_patience == 3 and c.max_steps == 9 and c.adapter.dropout == 0.1 for c in configs)
    assert base.adapter.bottleneck == 64 and base.early_stopping_patience == 0  # the base config is untouched
    placed = sweep_configs(base, [8], [1e-3], placements=["houlsby", "parallel"])
    assert [c.name for c in placed] == ["route-r8-lr1e-3-houlsby", "route-r8-lr1e-3-parallel"]
    assert [(c.adapter.placement, c.adapter.scaling) for c in placed] == [("houlsby", 1.0), ("parallel", 4.0)]
    assert placed[0].early_stopping_patience == 2  # the default patience
    assert [lr_tag(x) for x in (1e-3, 2e-3, 5e-4, 1.5e-2, 0.1)] == ["1e-3", "2e-3", "5e-4", "1p5e-2", "1e-1"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bottlenecks": [], "lrs": [1e-3]}, "at least one bottleneck"),
        ({"bottlenecks": [0], "lrs": [1e-3]}, "bottleneck must be a positive whole number"),
        ({"bottlenecks": [8], "lrs": [float("nan")]}, "Learning rates must be positive"),
        ({"bottlenecks": [8], "lrs": [1e-3], "placements": ["sideways"]}, "placement must be one of"),
        ({"bottlenecks": [8, 8], "lrs": [1e-3]}, "repeats a run"),
        ({"bottlenecks": [8], "lrs": [1e-3], "patience": 0}, "patience must be"),
    ],
)
def test_sweep_configs_refuse_a_bad_grid(kwargs, message):
    with pytest.raises(AdapterError, match=message):
        sweep_configs(TrainConfig(data=ROUTING, name="route"), **kwargs)
    with pytest.raises(AdapterError, match="mode must be 'adapter'"):
        sweep_configs(TrainConfig(data=ROUTING, mode="full"), [8], [1e-3])


@pytest.fixture
def tiny_bases(monkeypatch):
    """Every `load_base` the engine calls gives a tiny BERT (hidden 32, 2 layers) with MiniLM's tokenizer;
    the list records each load."""
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))
    loads = []

    def load(name, *args, **kwargs):
        model = tiny_model("bert", head="base")
        model.resize_token_embeddings(len(tokenizer))
        ensure_state(model, model_family(model)).base_name = name
        loads.append(Base(name, model, tokenizer, model_family(model)))
        return loads[-1]

    for module in [m for n, m in sys.modules.items() if n.startswith("adapter_core") and m is not None]:
        if getattr(module, "load_base", None) is not None and module.__name__ != "adapter_core.catalog":
            monkeypatch.setattr(module, "load_base", load)
    return loads


def tiny_config(**kw) -> TrainConfig:
    return TrainConfig(
        **{"data": ROUTING, "name": "route", "max_steps": 6, "batch_size": 32, "max_length": 48, "eval_every": 2, **kw}
    )


def test_a_sweep_of_four_runs_shares_one_base_and_ranks_them(tiny_bases, tmp_path):
    configs = sweep_configs(tiny_config(), [4, 16], [1e-3, 3e-2], patience=1)
    events = []
    result = run_sweep(configs, tmp_path / "sweep", events.append)
    assert len(tiny_bases) == 1  # loaded once for the four runs
    assert list_adapters(tiny_bases[0].model) == []  # each run took its adapter off the shared base
    assert result.status == "completed" and result.metric == "accuracy" and len(result.rows) == 4
    assert {r["name"] for r in result.rows} == {c.name for c in configs}
    keys = [rank_key("classification", r["metrics"]) for r in result.rows]
    assert keys == sorted(keys) and result.best is result.rows[0]  # best first
    for row in result.rows:
        assert (tmp_path / "sweep" / row["name"] / "adapter" / "adapter_config.json").is_file()
        assert 0 < row["steps"] <= 6 and row["train_seconds"] > 0 and row["trainable"] > 0
        assert row["accuracy"] == row["metrics"]["accuracy"] and isinstance(row["stopped_early"], bool)
    wide = next(r for r in result.rows if r["bottleneck"] == 16)
    narrow = next(r for r in result.rows if r["bottleneck"] == 4)
    assert wide["trainable"] > narrow["trainable"]
    # Every run's events arrive, tagged with the run.
    done = [e for e in events if e.kind == "done"]
    assert [e.info["sweep_run"] for e in done] == [c.name for c in configs]
    assert [e.info["sweep_index"] for e in done] == [0, 1, 2, 3] and done[0].info["sweep_total"] == 4
    # The best adapter loads from its folder.
    assert result.best_adapter_dir == tmp_path / "sweep" / result.best["name"] / "adapter"
    fresh = tiny_model("bert", head="base")
    fresh.resize_token_embeddings(len(tiny_bases[0].tokenizer))
    assert load_adapter(fresh, result.best_adapter_dir) == result.best["name"]
    saved = json.loads((result.best_adapter_dir / "adapter_config.json").read_text())
    assert saved["config"]["bottleneck"] == result.best["bottleneck"]


def test_a_stop_request_ends_the_sweep_after_the_current_run(tiny_bases, tmp_path):
    configs = sweep_configs(tiny_config(), [4, 8], [1e-3])
    steps = []

    def on_event(event):
        if event.kind == "step":
            steps.append(event.step)

    result = run_sweep(configs, tmp_path, on_event, should_stop=lambda: len(steps) >= 2)
    assert result.status == "stopped" and [r["name"] for r in result.rows] == [configs[0].name]
    assert result.rows[0]["status"] == "stopped"
    never = Run(tmp_path / configs[1].name)  # queued as part of the sweep, cancelled before it started
    assert never.status()["status"] == "cancelled" and not never.has_adapter and not never.events()


@pytest.mark.slow  # the complete tier: the CLI as a subprocess
def test_cli_sweep_prints_the_table_and_copies_the_best(tiny_bases, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", ROUTING, "--bottlenecks", "4,16", "--lrs", "1e-3,3e-2", "--max-steps", "4"]
    assert main([*args, "--batch-size", "32", "--max-length", "48", "--eval-every", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "sweep.json").read_text())
    names = [r["name"] for r in summary["rows"]]
    assert sorted(names) == ["sweep-r16-lr1e-3", "sweep-r16-lr3e-2", "sweep-r4-lr1e-3", "sweep-r4-lr3e-2"]
    assert printed.index(names[0]) < printed.index(names[-1])  # the table is printed best first
    assert f"best: {names[0]}" in printed
    best = json.loads((out / "best" / "adapter_config.json").read_text())
    assert best["name"] == names[0] and (out / "best" / "adapter_model.safetensors").is_file()
    assert len(tiny_bases) == 1


def test_cli_sweep_ctrl_c_stops_the_whole_sweep_and_keeps_the_best(tiny_bases, tmp_path, capsys, monkeypatch):
    shown = cli_sweep.sweep_line

    def press_ctrl_c(event):  # at the first step of the first run, as a terminal would
        if event.kind == "step" and event.step == 1 and event.info["sweep_index"] == 0:
            signal.raise_signal(signal.SIGINT)
        return shown(event)

    monkeypatch.setattr(cli_sweep, "sweep_line", press_ctrl_c)
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "--data",
        ROUTING,
        "--bottlenecks",
        "4,16",
        "--lrs",
        "1e-3",
        "--epochs",
        "50",
        "--max-steps",
        "300",
    ]
    assert main([*args, "--batch-size", "32", "--max-length", "48", "--eval-every", "150", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "Stopping after this step" in printed.err and "The sweep was stopped before its last run." in printed.out
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["status"] == "stopped" and [r["name"] for r in summary["rows"]] == ["sweep-r4-lr1e-3"]
    assert summary["rows"][0]["status"] == "stopped" and 0 < summary["rows"][0]["steps"] < 300
    assert Run(out / "sweep-r16-lr1e-3").status()["status"] == "cancelled"  # never started
    best = json.loads((out / "best" / "adapter_config.json").read_text())
    assert best["name"] == "sweep-r4-lr1e-3" and f"best: {best['name']}" in printed.out


def test_cli_sweep_a_failing_run_is_one_error_line_and_ends_the_sweep(tiny_bases, tmp_path, capsys):
    data = tmp_path / "one-label.csv"
    data.write_text("text,label\n" + "".join(f"question {i},billing\n" for i in range(40)))
    out = tmp_path / "sweep"
    assert main(["sweep", "--data", str(data), "--bottlenecks", "4,16", "--lrs", "1e-3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "has only one label" in err[0], err
    assert Run(out / "sweep-r4-lr1e-3").status()["status"] == "failed"
    assert Run(out / "sweep-r16-lr1e-3").status()["status"] == "cancelled"  # the rest of the sweep is not tried
    assert not (out / "sweep.json").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bottlenecks", "16,x", "--lrs", "1e-3"], "--bottlenecks must be whole numbers"),
        (["--bottlenecks", "16", "--lrs", "fast"], "--lrs must be numbers"),
        (["--bottlenecks", "16", "--lrs", "1e-3", "--placements", "side"], "placement must be one of"),
        (["--bottlenecks", "16", "--lrs", "1e-3", "--patience", "0"], "patience must be"),
        (["--bottlenecks", "16", "--lrs=-1e-3"], "Learning rates must be positive"),
    ],
)
def test_cli_sweep_refuses_bad_input_in_one_line(extra, message, tmp_path, capsys, tiny_bases):
    assert main(["sweep", "--data", ROUTING, *extra, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not tiny_bases


def test_cli_sweep_refuses_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["sweep", "--data", ROUTING, "--bottlenecks", "8", "--lrs", "1e-3", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err
