"""Plain words first: the adapter's size said as small, medium or large (r in the help), one plain label per
metric wherever the studio shows one, and no CLI flag in any message the studio can show.

The flag checks are twofold: the studio's own paths driven with the inputs that produce such messages
(a one-column file, ambiguous columns, a tracker whose package is missing, an AdapterHub export that
must leave its head behind), and every message template of the code the studio calls read from the
source, run through the studio's translation, so that a new message with a flag fails here first.
"""

import ast
import re
from pathlib import Path

import pytest
from helpers import ROOT

from adapter_core import AdapterError
from adapter_core.config import SIZE_WORDS, adapter_size, size_in_words
from adapter_core.engine import PRESETS, tracking
from studio import runs_view as rs
from studio import settings as st
from studio import sweeps as sw
from studio import train_view as h
from studio.data_view import inspect_data
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.tabs.common import message_of
from studio.text import METRICS, metric_label, metrics_line, studio_words

FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
SOURCE = {"name": "support_routing.csv", "ready": True, "rows": 480, "labels": ["billing", "orders", "tech"]}


# The adapter's size --------------------------------------------------------------------------------------
def test_the_adapter_size_is_said_in_words_with_r_beside_them():
    assert [adapter_size(r) for r in (4, 16, 31, 32, 64, 127, 128, 256, 512)] == [
        "small", "small", "small", "medium", "medium", "medium", "large", "large", "large",
    ]  # fmt: skip
    # The presets' widths are one of each, in order.
    assert [adapter_size(p.bottleneck) for p in PRESETS.values()] == ["small", "medium", "large"]
    assert size_in_words(64) == "Medium adapter, r = 64" and size_in_words(None) == ""
    size = st.form_settings()["bottleneck"]
    assert size.label == "Adapter size" and "r" not in size.label.split()
    info = st.info_for(size, public=False, value=16)
    assert info.startswith("Small adapter, r = 16. How much the adapter can learn")
    assert f"r under {SIZE_WORDS[0][0]}" in info and st.info_for(size, False).startswith("How much")


# Metrics -------------------------------------------------------------------------------------------------
def test_each_metric_has_one_plain_label_and_lines_gloss_the_ones_that_need_it():
    assert metric_label("macro_f1") == "F1 averaged over labels"
    assert metric_label("val_loss") == "validation loss" and metric_label("accuracy") == "accuracy"
    assert metric_label("some_new_score") == "some new score"  # never a raw key with underscores
    line = metrics_line({"val_loss": 0.4123, "accuracy": 0.9, "macro_f1": 0.85, "steps": True})
    assert line == "validation loss 0.412 (lower is better), accuracy 0.900, F1 averaged over labels 0.850"
    assert metrics_line({"perplexity": 3.2}) == (
        "perplexity 3.200 (lower is better: how surprised the model is by the answers)"
    )


def test_past_runs_compare_runs_and_sweeps_use_the_labels(tmp_path):
    studio = Studio(tmp_path, policy=Policy.local())
    try:
        run = studio.jobs.store.create("r16", {"name": "r16", "task": "classification", "adapter": {"bottleneck": 16}})
        run.append_event({"kind": "status", "status": "training", "info": {"trainable": 1000}})
        run.set_status("completed", metrics={"val_loss": 0.5, "accuracy": 0.8, "macro_f1": 0.75}, steps=2)
        text = h.show_past_run(studio, None, run.id)["text"]
        assert "validation loss 0.500 (lower is better)" in text and "F1 averaged over labels 0.750" in text
        assert "macro_f1" not in text and "val_loss" not in text
        table = rs.compare_runs(studio, None)["table"]
        assert table.loc[0, "F1 averaged over labels"] == 0.75 and table.loc[0, "validation loss"] == 0.5
        assert not set(table.columns) & {k for k in METRICS if "_" in k}  # no engine key as a column
    finally:
        studio.jobs.close()
    member = {"name": "s-r8", "bottleneck": 8, "lr": 1e-3, "placement": "houlsby", "status": "completed",
              "metrics": {"perplexity": 3.2, "val_loss": 1.1}, "steps": 4, "train_seconds": 2.0, "stopped_early": False}  # fmt: skip
    row = sw._result_row(member)
    assert row["perplexity"] == 3.2 and row["validation loss"] == 1.1 and "val_loss" not in row


# No CLI flag in a studio message -------------------------------------------------------------------------
def test_the_studios_words_keep_its_own_control_and_drop_the_flag():
    both = "Rename one to 'label', or map it explicitly (--label-column in the CLI, the dropdown in the studio)."
    assert studio_words(both) == "Rename one to 'label', or map it explicitly (the dropdown)."
    shown = message_of(AdapterError(both), "test")  # what the error handler gives Gradio
    assert "(the dropdown)" in shown and not FLAG.search(shown)


def test_files_whose_columns_need_picking_say_so_without_a_flag(tmp_path):
    one_column = tmp_path / "one_column.csv"
    one_column.write_text("text\nmy parcel is late\nI was charged twice\n", encoding="utf-8")
    ambiguous = tmp_path / "ambiguous.csv"
    ambiguous.write_text("sentence,utterance,label\na,b,x\nc,d,y\n", encoding="utf-8")
    for path, says in ((one_column, "has no label column"), (ambiguous, "could each be the text column")):
        summary = inspect_data(str(path), "classification")["summary"]
        assert says in summary and "the dropdown" in summary, summary
        assert not FLAG.search(summary), summary


def test_a_tracker_whose_package_is_missing_is_refused_without_a_flag(tmp_path, monkeypatch):
    monkeypatch.setitem(tracking._AVAILABLE, "mlflow", lambda: False)
    studio = Studio(tmp_path, policy=Policy.local())
    source = {**SOURCE, "path": str(SAMPLES_DIR / "support_routing.csv")}
    try:
        with pytest.raises(AdapterError) as refused:  # Start, as the Train tab calls it
            h.start_training(studio, None, "minilm", source, "classification", {}, "t", {"report_to": "mlflow"})
        assert not studio.jobs.jobs()  # refused before anything was queued
    finally:
        studio.jobs.close()
    shown = message_of(refused.value, "start")
    assert "mlflow package" in shown and not FLAG.search(shown), shown


def test_an_export_that_leaves_its_head_behind_says_so_without_a_flag(tmp_path):
    from share_fixtures import tiny_adapter

    from studio import sharing

    studio = Studio(tmp_path / "home", policy=Policy.local())
    try:
        _, folder = tiny_adapter(tmp_path / "made" / "meanie", name="meanie", pooling="mean")
        studio.library.publish(folder, "meanie")
        _, note = sharing.export_adapterhub(studio, "meanie")
        assert "without its head: pooling 'mean'" in note and not FLAG.search(note), note
    finally:
        studio.jobs.close()


# Every message template the studio may show, read from the source ---------------------------------------
# Code the studio never calls, or text that is no message: the CLI and the server (their users type
# flags), a model card's and a pack's usage commands (documents, shown as written), and a warning logged
# to the server's log. Each is a place, not a pattern, so a new message elsewhere is checked.
NOT_STUDIO = {
    "adapter_core/cli",
    "adapter_core/serve",
    "adapter_core/__main__.py",
    "adapter_core/card_usage.py",
    "adapter_core/share/packs.py",
    "adapter_core/pull.py:pulled_library",  # only `serve --library hf://...` reads a pack this way
    "adapter_core/adapterhub_format.py:PICKLE_NOTE",  # logged, never shown
}


def message_templates(path: Path):
    """(place, text) of each string in a module that is no docstring, an f-string's values as X."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node

    def place(node) -> str:
        while id(node) in parents:
            node = parents[id(node)]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node.name
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                return node.targets[0].id
        return ""

    inside_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings or id(node) in inside_fstring:
                continue
            text = node.value
        else:
            continue
        yield place(node), text


def test_no_message_the_studio_can_show_names_a_cli_flag():
    files = [*(ROOT / "adapter_core").rglob("*.py"), *(ROOT / "studio").rglob("*.py"), ROOT / "app.py"]
    checked, found = 0, []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if any(rel == p or rel.startswith(p + "/") for p in NOT_STUDIO):
            continue
        for where, text in message_templates(path):
            if f"{rel}:{where}" in NOT_STUDIO or not FLAG.search(text):
                continue
            checked += 1
            if FLAG.search(studio_words(text)):
                found.append(f"{rel} ({where}): {text[:120]!r}")
    assert not found, "a CLI flag in a message the studio may show:\n" + "\n".join(found)
    assert checked >= 4  # the shared messages that name the CLI's flag and the studio's control are read
