"""Compare's finished runs: every run of the visitor from the run store, baselines included (a full
fine-tune keeps no adapter, a head-only run trains no adapter), with their curves, metrics, and the
accuracy-against-size trade-off that Houlsby et al. plot, on the visitor's own data.

Owner-scoped like every handler: the run store lists only the caller's runs.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from adapter_core import AdapterError
from adapter_core.engine import Run

from . import charts
from .service import Studio
from .text import metric_label

FINISHED = ("completed", "stopped")
MAX_RUNS = 200  # newest first; an older run is still under Train → Past runs
METRICS = ("accuracy", "macro_f1", "val_loss", "perplexity")  # the table's metric columns, named by `metric_label`
RUN_COLUMNS = [
    "name", "mode", "bottleneck", "placement", "trainable params", "train time (s)", "steps", "status",
    *map(metric_label, METRICS), "in the library", "run",
]  # fmt: skip


def run_facts(run: Run) -> dict[str, Any] | None:
    """What Compare shows of one finished run, or None for a run still going (or failed)."""
    status = run.status()
    if status.get("status") not in FINISHED:
        return None
    config = run.config()
    adapter = config.get("adapter") if isinstance(config.get("adapter"), dict) else config  # legacy flat keys
    metrics = status.get("metrics") if isinstance(status.get("metrics"), dict) else {}
    return {
        "run": run.id,
        "name": config.get("name") or run.id,
        "task": config.get("task", "classification"),
        "mode": config.get("mode", "adapter"),
        "bottleneck": adapter.get("bottleneck") if config.get("mode", "adapter") == "adapter" else None,
        "placement": adapter.get("placement") if config.get("mode", "adapter") == "adapter" else None,
        "trainable": status.get("trainable") or _trainable(run),
        "seconds": status.get("train_seconds"),
        "steps": status.get("steps"),
        "status": status["status"],
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "library_name": status.get("library_name"),
    }


def _trainable(run: Run) -> int | None:
    """The trainable parameter count from the run's "training" status event (the first lines of its log)."""
    try:
        with open(run.dir / "metrics.jsonl", encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"training"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("kind") == "status" and event.get("status") == "training":
                    return (event.get("info") or {}).get("trainable")
    except OSError:
        return None
    return None


def finished_runs(studio: Studio, owner: str | None) -> list[dict[str, Any]]:
    """The caller's finished runs, newest first."""
    runs = studio.jobs.store.list(owner=studio.owner(owner))[:MAX_RUNS]
    return [facts for facts in map(run_facts, runs) if facts is not None]


def runs_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in runs:
        seconds = r["seconds"]
        rows.append(
            {
                "run": r["run"],
                "name": r["name"],
                "mode": charts.MODE_NAMES.get(r["mode"], r["mode"]),
                "bottleneck": r["bottleneck"],
                "placement": r["placement"],
                "trainable params": f"{r['trainable']:,}" if isinstance(r["trainable"], int) else "",
                "train time (s)": f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "",
                "steps": r["steps"],
                "status": r["status"],
                **{metric_label(k): round(r["metrics"][k], 4) for k in METRICS if k in r["metrics"]},
                "in the library": r["library_name"] or "",
            }
        )
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    empty = [c for c in RUN_COLUMNS if frame[c].isin(["", None]).all() or frame[c].isna().all()]
    return frame.drop(columns=empty) if rows else frame  # a column no run has (perplexity, say) is left out


def tradeoff_points(studio: Studio, owner: str | None, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per classification run with an accuracy and a parameter count, and one per library
    adapter of the caller's that no listed run published (uploaded, or trained before the run store)."""
    points = [
        {"name": r["name"], "mode": r["mode"], "trainable": r["trainable"], "accuracy": r["metrics"]["accuracy"],
         "seconds": r["seconds"], "run": r["run"], "key": adapter_name(r)}
        for r in runs
        if r["task"] == "classification" and "accuracy" in r["metrics"] and r["trainable"]
    ]  # fmt: skip
    published = {r["library_name"] for r in runs if r["library_name"]}
    for e in studio.library.entries(owner=studio.owner(owner)):
        accuracy = (e.training.get("metrics") or {}).get("accuracy")
        if e.task != "classification" or e.name in published or not isinstance(accuracy, (int, float)):
            continue
        seconds = e.training.get("train_seconds")
        points.append(
            {"name": e.name, "mode": None, "trainable": e.parameters, "accuracy": accuracy,
             "seconds": seconds if isinstance(seconds, (int, float)) else None, "run": None, "key": e.name}
        )  # fmt: skip
    return points


def adapter_name(run: dict[str, Any]) -> str:
    """The name a run goes by on the charts: the adapter it published, else its own."""
    return run["library_name"] or run["name"]


def colours(studio: Studio, owner: str | None, runs: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Adapter or run name -> its colour, the same on every Compare chart (`charts.colour_map` over all of
    the caller's adapters and finished runs, whichever each chart shows)."""
    runs = finished_runs(studio, owner) if runs is None else runs
    return charts.colour_map([*studio.library.names(owner=studio.owner(owner)), *map(adapter_name, runs)])


def compare_runs(studio: Studio, owner: str | None) -> dict[str, Any]:
    """Compare → Runs: the table, the trade-off scatter, accuracy against time, and the run ids to pick."""
    runs = finished_runs(studio, owner)
    colour = colours(studio, owner, runs)
    points = [{**p, "colour": colour[p["key"]]} for p in tradeoff_points(studio, owner, runs)]
    return {
        "table": runs_table(runs),
        "tradeoff": charts.tradeoff(points),
        "timing": charts.accuracy_time(points),
        "choices": [r["run"] for r in runs],
    }


def run_curves(studio: Studio, owner: str | None, run_ids: list[str] | None):
    """The training curves of the picked runs, overlaid (at most 8)."""
    run_ids = list(run_ids or [])
    if len(run_ids) > 8:
        raise AdapterError(f"Pick at most 8 runs to overlay; you picked {len(run_ids)}.")
    picked = [studio.jobs.store.get(r, owner=studio.owner(owner)) for r in run_ids]
    runs = finished_runs(studio, owner)
    colour, names = colours(studio, owner, runs), {r["run"]: adapter_name(r) for r in runs}
    return charts.overlay(
        {run.id: run.events() for run in picked}, {run.id: colour.get(names.get(run.id, "")) for run in picked}
    )
