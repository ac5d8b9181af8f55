"""Sweeps in the studio: the grid from the form, and the results table of a sweep.

A sweep is the engine's (`adapter_core.engine`'s `sweep_configs` and its sweep executor on the job
manager, the CLI's too): ordinary runs queued as one group, each stopping early, the loaded base reused
between them, and its record kept in the run store, so that a restart neither forgets which runs formed
it nor fails to publish its best. When the last run ends, ONLY the best adapter is published to the
library as `<name>-best` (`Studio._publish_best`); the other runs' adapters stay in their run folders
(Train → Past runs, Compare → Runs). The service (`Studio.submit_sweep`) checks the owner and the
quotas; these are plain functions over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from adapter_core import PLACEMENTS, AdapterError, Setting
from adapter_core.engine import ACTIVE, SweepRecord, TrainConfig, rank_key, sweep_configs, task_lr

from .library import MAX_NAME, check_name
from .quotas import check_sweep_size
from .settings import patience as settings_patience
from .settings import preset_name, train_config
from .text import md, metric_label

SUFFIX = "-best"
BOTTLENECKS = (4, 8, 16, 32, 64, 128, 256)  # the picker's choices; any other width may be typed
DEFAULT_BOTTLENECKS = (16, 64)
MAX_LIST = 64  # values in one list of a request, before anything is parsed


def best_name(sweep: SweepRecord) -> str:
    """The library name of a sweep's best adapter: the name typed in the Adapter tab, + SUFFIX."""
    return sweep.name[: MAX_NAME - len(SUFFIX)].rstrip(" -_") + SUFFIX


# The grid from the form --------------------------------------------------------------------------
def parse_list(values: Any, kind: type, what: str) -> list:
    """A multi-select's values (or "16, 64" typed by an API caller) as numbers, each once, in order."""
    if values in (None, ""):
        return []
    items = values if isinstance(values, (list, tuple)) else str(values).replace(";", ",").split(",")
    if len(items) > MAX_LIST:
        raise AdapterError(f"At most {MAX_LIST} {what} in a sweep request; got {len(items)}.")
    out = []
    for item in items:
        try:
            value = kind(str(item).strip()) if kind is int else float(item)
        except (TypeError, ValueError):
            raise AdapterError(f"{what.capitalize()} are numbers; got {str(item)[:30]!r}.") from None
        if not value > 0:
            raise AdapterError(f"{what.capitalize()} are positive numbers; got {item!r}.")
        if value not in out:
            out.append(value)
    return out


def sweep_grid(
    studio,
    base: str,
    source: dict | None,
    task: str,
    mapping: dict[str, str],
    name: str,
    settings: dict[str, Any],
    bottlenecks: Any,
    lrs: Any,
    placements: Any = None,
    patience: int = 2,
) -> list[TrainConfig]:
    """The runs of the grid over the Adapter tab's settings, by the engine's `sweep_configs` (the CLI's
    too): each bottleneck x learning rate (x placement), early stopping on, named `<name>-r<r>-lr<lr>`.
    Its size is checked against the policy before a config is built."""
    widths = parse_list(bottlenecks, int, "bottlenecks")
    rates = parse_list(lrs, float, "learning rates")
    if isinstance(placements, str):  # "houlsby, parallel" from an API caller
        placements = [p.strip() for p in placements.split(",") if p.strip()]
    places = [str(p) for p in placements or []]
    for p in places:
        if p not in PLACEMENTS:
            raise AdapterError(f"Placements are {', '.join(PLACEMENTS)}; got {p[:30]!r}.")
    places = list(dict.fromkeys(places))
    runs = len(widths) * len(rates) * max(1, len(places))
    grid = f"{len(widths)} bottlenecks x {len(rates)} learning rates" + (
        f" x {len(places)} placements" if places else ""
    )
    check_sweep_size(studio.policy, runs, grid)
    # Room in the 64-character name for the grid's own part ("-r256-lr2p5e-4-parallel").
    name = check_name(name or default_name(source))[: MAX_NAME - 24].rstrip(" -_")
    base_config = train_config(base, source, task, mapping, name, settings)
    return sweep_configs(base_config, widths, rates, places or None, patience=settings_patience(patience))


# What the Train tab shows ----------------------------------------------------------------------------
SWEEP_COLUMNS = ["run", "bottleneck", "lr", "placement", "status", "steps", "train time (s)", "stopped early"]


def grid_choices(s: Setting, task: str, preset: str | None) -> tuple[list[str], list[str]]:
    """A sweep form's list for a setting it may vary: (values to pick from, those picked at first). A
    setting with choices starts empty: the runs keep the form's own value."""
    if s.choices:
        return list(s.choices), []
    if s.name == "lr":
        return lr_choices(task, preset), default_lrs(task, preset)
    if s.name == "bottleneck":
        return [str(b) for b in BOTTLENECKS], [str(b) for b in DEFAULT_BOTTLENECKS]
    return [], [str(s.typical if s.default is None else s.default)]


def lr_choices(task: str, preset: str | None) -> list[str]:
    """Learning rates to pick from: a quarter of the preset's rate for `task` up to twice it."""
    lr = task_lr(task if task in ("classification", "instruction") else "classification", preset_name(preset))
    return [f"{lr * f:g}" for f in (0.25, 0.5, 1.0, 2.0)]


def default_lrs(task: str, preset: str | None) -> list[str]:
    """Half the preset's rate, and the rate itself."""
    return lr_choices(task, preset)[1:3]


def default_name(source: dict | None) -> str:
    return Path((source or {}).get("name") or "sweep").stem or "sweep"


def sweep_results_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=SWEEP_COLUMNS)


def progress(studio, owner: str | None, sweep_id: str) -> tuple[str | None, list[str], bool]:
    """(the running member's job id, every member's id, whether the sweep has ended and chosen its best)."""
    sweep = find(studio, owner, sweep_id)
    members = studio.jobs.sweeps.members(sweep)
    running = next((m["id"] for m in members if m["status"] in ("loading", "training")), None)
    return running, list(sweep.run_ids), sweep.ended


def sweep_results(studio, owner: str | None, sweep_id: str | None) -> tuple[pd.DataFrame, str]:
    """The sweep's runs, best first by the validation metric (unfinished ones last), and a status line."""
    sweep = find(studio, owner, sweep_id)
    if sweep is None:
        return sweep_results_empty(), "No sweep yet."
    members = studio.jobs.sweeps.members(sweep)
    done = [m for m in members if m["status"] not in ACTIVE]
    ordered = sorted(members, key=lambda m: (m["status"] in ACTIVE, rank_key(sweep.task, m["metrics"])))
    rows = [_result_row(m) for m in ordered]
    running = next((m for m in members if m["status"] in ("loading", "training")), None)
    parts = [f"**Sweep {md(sweep.name)}**: {len(done)} of {sweep.expected} runs ended"]
    if running:
        parts.append(f"running {md(running['name'])}")
    if sweep.ended:
        parts.append(md(outcome(sweep)))
    else:
        parts.append(f"when the last ends, the best is saved to the library as {md(repr(best_name(sweep)))}")
    return pd.DataFrame(rows).reindex(columns=_columns(rows)), " · ".join(parts)


def outcome(sweep: SweepRecord) -> str:
    """What became of an ended sweep's best, in words."""
    if sweep.best is None:
        return "No run of the sweep finished with an adapter; nothing was published."
    if sweep.published:
        return f"Saved the best run, {sweep.best_name}, to the library as {sweep.published!r}."
    reason = sweep.error or "saving it failed on the server."
    return f"The best run was {sweep.best_name}, but it could not be saved to the library: {reason}"


def _result_row(member: dict[str, Any]) -> dict[str, Any]:
    seconds = member["train_seconds"]
    return {
        "run": member["name"],
        "bottleneck": member["bottleneck"],
        "lr": f"{member['lr']:g}" if isinstance(member["lr"], (int, float)) else "auto",
        "placement": member["placement"],
        "status": member["status"],
        **{metric_label(k): round(v, 4) for k, v in member["metrics"].items() if isinstance(v, (int, float))},
        "steps": member["steps"],
        "train time (s)": round(seconds) if isinstance(seconds, (int, float)) else None,
        "stopped early": "yes" if member["stopped_early"] else "",  # recorded with the run's end
    }


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    metrics = list(dict.fromkeys(k for r in rows for k in r if k not in SWEEP_COLUMNS))
    return SWEEP_COLUMNS[:5] + metrics + SWEEP_COLUMNS[5:]


def find(studio, owner: str | None, sweep_id: str | None) -> SweepRecord | None:
    """The caller's sweep `sweep_id`, or their newest when it is empty; another owner's is not there."""
    owner = studio.owner(owner)
    if sweep_id:
        return studio.jobs.sweeps.get(sweep_id, owner)
    return studio.jobs.sweeps.latest(owner)


def stop_sweep(studio, owner: str | None, sweep_id: str | None) -> str:
    """Cancel the sweep's queued runs and stop its running one; the best of what ended is still published."""
    sweep = find(studio, owner, sweep_id)
    if sweep is None:
        raise AdapterError("No sweep to stop.")
    stopping = studio.jobs.sweeps.stop(sweep.id, studio.owner(owner))
    if not stopping:
        return "That sweep already ended."
    return f"Stopping the sweep: {stopping} run(s) cancelled or stopping; the best finished run is kept."
