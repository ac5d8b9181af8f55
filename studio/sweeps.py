"""Sweeps in the studio: a small grid (bottleneck x learning rate, optionally placement) queued as
ordinary runs with one group, a results table sorted by the validation metric, and, when the last run
of the group ends, ONLY the best adapter published to the library as `<name>-best`. The other runs'
adapters stay in their run folders (Train → Past runs, Compare → Runs).

The grid is the engine's (`adapter_core.engine.sweep.sweep_configs`, the CLI's too); the job manager
reuses the loaded base between consecutive runs of one base. The service (`Studio.submit_sweep`)
checks the owner and the quotas; these are plain functions over it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adapter_core import PLACEMENTS, AdapterError, Setting
from adapter_core.engine import ACTIVE, TrainConfig, rank_key, sweep_configs, task_lr

from .library import MAX_NAME, check_name, safe_name
from .quotas import check_sweep_size
from .settings import patience as settings_patience
from .settings import preset_name, train_config
from .text import md

SUFFIX = "-best"
BOTTLENECKS = (4, 8, 16, 32, 64, 128, 256)  # the picker's choices; any other width may be typed
DEFAULT_BOTTLENECKS = (16, 64)
MAX_LIST = 64  # values in one list of a request, before anything is parsed


@dataclass
class Sweep:
    """One sweep's bookkeeping: its runs (job ids, in grid order) and what became of the best."""

    group: str
    name: str  # the adapter name typed in the Adapter tab; the best is published as name + SUFFIX
    owner: str | None
    task: str
    expected: int  # runs in the grid; the best is chosen once all of them have ended
    job_ids: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    ended: bool = False
    published: str | None = None  # the library name of the best, once published
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def new_sweep(name: str, owner: str | None, task: str, runs: int) -> Sweep:
    name = check_name(name)
    group = f"{safe_name(name)[:40]}-sweep-{secrets.token_hex(4)}"
    return Sweep(group, name, owner, task, runs)


def best_name(sweep: Sweep) -> str:
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


# After each run ------------------------------------------------------------------------------------
def member_ended(studio, sweep: Sweep) -> None:
    """Called as each run of `sweep` ends: once every run has ended, publish the best (and only it)."""
    with sweep.lock:
        if sweep.ended or len(sweep.job_ids) < sweep.expected:
            return
        jobs = [studio.jobs.get(i) for i in sweep.job_ids]
        if any(j.status in ACTIVE for j in jobs):
            return
        sweep.ended = True
    best = best_job(sweep.task, jobs)
    if best is None:
        sweep.message = "No run of the sweep finished with an adapter; nothing was published."
        return
    try:
        entry = studio.library.publish(
            best.run.adapter_dir, best_name(sweep), owner=sweep.owner, curve=best.run.dir / "metrics.jsonl"
        )
    except Exception as e:  # the sweep has ended all the same; say why its best is not in the library
        text = str(e) if isinstance(e, AdapterError) else "saving it failed on the server."
        sweep.message = f"The best run was {best.config.name}, but it could not be saved to the library: {text}"
        raise
    sweep.published = entry.name
    best.run.set_status(best.status, library_name=entry.name)
    sweep.message = f"Saved the best run, {best.config.name}, to the library as {entry.name!r}."
    best.events.append({"kind": "published", "message": sweep.message, "library_name": entry.name})


def best_job(task: str, jobs: list) -> Any:
    """The finished run with the best validation metric (the training loop's own comparison)."""
    ranked = [j for j in jobs if j.status in ("completed", "stopped") and j.run.has_adapter and _metrics(j)]
    ranked.sort(key=lambda j: rank_key(task, _metrics(j)))
    return ranked[0] if ranked else None


def _metrics(job) -> dict[str, float]:
    metrics = job.run.status().get("metrics")
    return metrics if isinstance(metrics, dict) else {}


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


def progress(studio, owner: str | None, group: str) -> tuple[str | None, list[str], bool]:
    """(the running member's job id, every member's id, whether the sweep has ended and chosen its best)."""
    sweep = find(studio, owner, group)
    owner = studio.owner(owner)
    running = next(
        (i for i in sweep.job_ids if studio.jobs.get(i, owner=owner).status in ("loading", "training")), None
    )
    return running, list(sweep.job_ids), sweep.ended and bool(sweep.message)


def sweep_results(studio, owner: str | None, group: str | None) -> tuple[pd.DataFrame, str]:
    """The sweep's runs, best first by the validation metric (unfinished ones last), and a status line."""
    sweep = find(studio, owner, group)
    if sweep is None:
        return sweep_results_empty(), "No sweep yet."
    jobs = [studio.jobs.get(i, owner=studio.owner(owner)) for i in sweep.job_ids]
    done = [j for j in jobs if j.status not in ACTIVE]
    ordered = sorted(jobs, key=lambda j: (j.status in ACTIVE, rank_key(sweep.task, _metrics(j))))
    rows = [_result_row(j) for j in ordered]
    running = next((j for j in jobs if j.status in ("loading", "training")), None)
    parts = [f"**Sweep {md(sweep.name)}**: {len(done)} of {sweep.expected} runs ended"]
    if running:
        parts.append(f"running {md(running.config.name)}")
    if sweep.message:
        parts.append(md(sweep.message))
    elif not sweep.ended:
        parts.append(f"when the last ends, the best is saved to the library as {md(repr(best_name(sweep)))}")
    return pd.DataFrame(rows).reindex(columns=_columns(rows)), " · ".join(parts)


def _result_row(job) -> dict[str, Any]:
    status = job.run.status()
    adapter = job.config.adapter
    seconds = status.get("train_seconds")
    return {
        "run": job.config.name,
        "bottleneck": adapter.bottleneck,
        "lr": f"{job.config.lr:g}" if job.config.lr else "auto",
        "placement": adapter.placement,
        "status": job.status,
        **{k: round(v, 4) for k, v in _metrics(job).items() if isinstance(v, (int, float))},
        "steps": status.get("steps"),
        "train time (s)": round(seconds) if isinstance(seconds, (int, float)) else None,
        "stopped early": "yes" if status.get("stopped_early") else "",  # recorded with the run's end
    }


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    metrics = list(dict.fromkeys(k for r in rows for k in r if k not in SWEEP_COLUMNS))
    return SWEEP_COLUMNS[:5] + metrics + SWEEP_COLUMNS[5:]


def find(studio, owner: str | None, group: str | None) -> Sweep | None:
    """The caller's sweep `group`, or their newest when `group` is empty; another owner's is not there."""
    owner = studio.owner(owner)
    mine = [s for s in studio.sweeps.values() if owner is None or s.owner == owner]
    if group:
        found = next((s for s in mine if s.group == group), None)
        if found is None:
            raise AdapterError(f"No sweep {str(group)[:100]!r} for you.")
        return found
    return max(mine, key=lambda s: s.created, default=None)


def stop_sweep(studio, owner: str | None, group: str | None) -> str:
    """Cancel the sweep's queued runs and stop its running one; the best of what ended is still published."""
    sweep = find(studio, owner, group)
    if sweep is None:
        raise AdapterError("No sweep to stop.")
    owner = studio.owner(owner)
    active = [i for i in sweep.job_ids if not studio.jobs.get(i, owner=owner).finished.is_set()]
    for job_id in active:
        studio.jobs.stop(job_id, owner=owner)
    if not active:
        return "That sweep already ended."
    return f"Stopping the sweep: {len(active)} run(s) cancelled or stopping; the best finished run is kept."
