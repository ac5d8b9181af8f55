"""What Start will train, said before it starts: the run's plan as the run itself makes it (with this
studio's caps), its time and memory, and what still blocks it."""

from __future__ import annotations

import math
from typing import Any

from adapter_core import AdapterError
from adapter_core.engine import MAX_LEASE, SLICE_SECONDS, Plan, TrainConfig, gpu_seconds, planned_seconds
from adapter_core.engine import PRESETS as ENGINE_PRESETS

from .fit_view import fit_before_start
from .hardware import hardware
from .quotas import cap_run
from .service import Studio
from .settings import adapter_config, config_values, mode_value
from .text import duration, md, time_left
from .train_view import baseline_estimate, running

LONG_RUN = 300  # seconds: Start warns of a longer run before it starts


def start_blocker(studio: Studio, base: str, source: dict | None) -> str | None:
    """What Start still waits for, in words, or None: a loaded, mapped file and a base that can learn its task."""
    if not source:
        return "Load a data file (step 2) to see what will train. **Start** waits for it."
    if not source.get("ready", True):
        return f"Pick the columns of {md(source['name'])} in step 2. **Start** waits for them."
    task = source.get("task", "classification")
    if task not in studio.model_info(base).tasks:
        return f"⚠ {md(base)} cannot learn {task} tasks: pick another base model in step 1."
    return None


def sizing_note(studio: Studio, source: dict | None) -> str:
    """What the summary says while a newly loaded file's run is being sized (Start waits for it)."""
    if not source:
        return start_blocker(studio, "", source)
    return f"Sizing the run for {md(source.get('name') or 'your file')}…"


def can_start(
    studio: Studio, base: str, source: dict | None, owner: str | None = None, job_id: str | None = None
) -> bool:
    """Whether Start may be pressed: the data and base are ready, and the page's own run (`job_id`) is not
    still going (a second click would queue the same run again; Stop it, or wait)."""
    try:
        ready = start_blocker(studio, base, source) is None
    except AdapterError:  # a base model this studio does not serve
        return False
    return ready and not running(studio, owner, job_id)


def run_summary(studio: Studio, base: str, source: dict | None, settings: dict[str, Any], running: bool = False) -> str:
    """Exactly what Start will train: the file, its rows and labels, the model, the adapter and the steps,
    and how long it takes. While the page's run goes (`running`), its time is the progress line's alone."""
    blocker = start_blocker(studio, base, source)
    if blocker:
        return blocker
    task = source.get("task", "classification")
    labels = source.get("labels") or []
    adapter = adapter_config(settings)
    mode = mode_value(settings.get("mode"))
    tokens = source.get("tokens") if isinstance(source.get("tokens"), dict) else {}
    run = plan(studio, base, source, settings)
    measured = studio.seconds_per_token(base)
    rows, val_rows = source.get("rows") or 1, source.get("val_rows")
    seconds = whole_run(run, rows, task, settings, tokens.get("mean"), measured, val_rows)
    capped = time_capped(studio, run)  # then the figure above is not the run's: its steps are cut short
    if mode == "adapter":
        est = studio.estimate(base, adapter, len(labels))
        what = (
            f"Adapter: r={adapter.bottleneck}, {adapter.placement}, {est['trainable']:,} trainable "
            f"parameters ({est['percent']:.2f}% of the base)."
        )
    else:
        what = f"{'Head only' if mode == 'head' else 'Full fine-tuning'}: " + md(
            baseline_estimate(studio, base, mode, len(labels)).replace("**", "")
        )
    lines = [
        f"**Will train:** {md(source['name'])} ({source.get('rows', '?')} rows, {task}"
        + (f", {len(labels)} labels" if labels else "")
        + f") on **{md(base)}**.",
        what,
        f"Run: {run.describe()}" + (f"; {time_left(seconds)}." if seconds and not capped and not running else "."),
    ]
    if capped or run.total_steps < epochs_steps(run):
        lines.append(cap_note(studio, run))
    if source.get("oos_name") and task == "classification":
        lines.append(
            f"Out-of-scope examples: {md(source['oos_name'])} picks the router's out-of-scope score, and the run "
            "reports what share of it the router catches."
        )
    if seconds and seconds > LONG_RUN and not capped and not running:
        lines.append(long_run_note(seconds, settings))
    if hardware().kind == "zero-gpu":
        needs = gpu_seconds(base, run.total_steps)
        lines.append(
            f"Trains on ZeroGPU in slices of up to {SLICE_SECONDS:.0f} s of steps while this page is open; each "
            f"slice asks your daily GPU quota for at most {MAX_LEASE} s (its steps with headroom, and about 10 s "
            "to load the model). "
            + (
                f"This run needs about {duration(needs)} of your daily GPU quota (at the step time measured on an "
                "H200, ZeroGPU's card)."
                if needs is not None
                else "Its first slices measure how much of your daily GPU quota it needs."
            )
        )
    fit = fit_before_start(studio, base, task, len(labels), settings, run, tokens.get("longest"))
    if settings.get("continue_from"):
        lines.append(
            f"Continues your adapter {md(repr(str(settings['continue_from'])))} on this data: it keeps its own size, "
            "placement and head, so the adapter settings above do not apply."
        )
    if int(settings.get("patience") or 0):
        lines.append(f"Stops early after {int(settings['patience'])} evaluations without improvement.")
    return "  \n".join(lines + [md(line) for line in fit[:1]] + [f"⚠ {md(w)}" for w in run.warnings + fit[1:]])


def whole_run(
    run: Plan,
    rows: int,
    task: str,
    settings: dict[str, Any],
    tokens: float | None = None,
    measured: float | None = None,
    val_rows: int | None = None,
) -> float | None:
    """The whole run's seconds on this CPU, evaluations and end-of-run answers included (None on a GPU),
    for rows of `tokens` tokens on average (the task's typical length when unknown), at `measured` seconds
    per training token where a run of this base here measured it. The validation rows are those `rows`
    holds out from the plan's, or `val_rows` where the data brings its own split."""
    config = TrainConfig.from_settings({**config_values(settings), "task": task})
    return planned_seconds(run, config, val_rows or max(1, rows - run.rows), tokens, measured)


def long_run_note(seconds: float, settings: dict[str, Any]) -> str:
    """Start's warning for a run over LONG_RUN seconds here, with the figure and what is quicker."""
    quick = ENGINE_PRESETS["Quick look"].label
    other = f" The {quick} preset gives a first result in about 2 min." if settings.get("preset") != quick else ""
    return f"⚠ This run takes {time_left(seconds).removesuffix(' left')} on this machine.{other}"


def plan(studio: Studio, base: str, source: dict[str, Any], settings: dict[str, Any]) -> Plan:
    """The plan of the run that Start queues, as the run makes it (`TrainConfig.plan`): on the rows it trains
    on (the loaded rows less the validation split it holds out, none where the data brings its own), at
    the Data tab's mean length where it measured one (the task's typical length else), within this
    studio's caps on steps and time."""
    task = source.get("task", "classification")
    config = TrainConfig.from_settings({**config_values(settings), "task": task, "base": base})
    cap_run(studio.policy, config)
    rows = source.get("rows") or 1
    train_rows = rows if source.get("val_path") else max(1, int(rows * (1 - config.val_fraction)))
    tokens = source.get("tokens") if isinstance(source.get("tokens"), dict) else {}
    device = "cpu" if hardware().trains_on_cpu else "cuda"
    return config.plan(train_rows, device=device, tokens_per_example=tokens.get("mean"))


def epochs_steps(run: Plan) -> int:
    """The optimizer steps of the plan's epochs, before any cap."""
    return math.ceil(run.epochs * run.steps_per_epoch - 1e-6)


def time_capped(studio: Studio, run: Plan) -> bool:
    """Whether this public studio's training time cap ends the run (the plan's CPU figure reaches it)."""
    policy = studio.policy
    return policy.public and run.estimated_seconds is not None and run.estimated_seconds >= policy.max_seconds - 1e-6


def cap_note(studio: Studio, run: Plan) -> str:
    """How this public studio's caps end the run before its epochs do, in words."""
    policy = studio.policy
    limits = (
        f"this studio ends every run after {policy.max_steps:,} steps or {duration(policy.max_seconds)} of training"
    )
    if run.total_steps < epochs_steps(run):
        return (
            f"It stops at step {run.total_steps:,} of the {epochs_steps(run):,} of its {run.epochs:g} epochs: {limits}."
        )
    return f"It stops after {duration(policy.max_seconds)} of training, before its last steps: {limits}."
