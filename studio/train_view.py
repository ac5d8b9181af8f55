"""The studio's handlers as plain functions over `Studio`: no gradio here, so they are unit-tested directly.

Each takes the caller's `owner` explicitly (None in local mode) and returns plain values (markdown,
DataFrames, figures). The tabs wire them to components; `studio/errors.py` turns an `AdapterError`
into a message. User strings are escaped wherever they are rendered as Markdown.
"""

from __future__ import annotations

import time
from typing import Any

from adapter_core import AdapterError
from adapter_core.engine import DEFAULT_PRESET as ENGINE_DEFAULT
from adapter_core.engine import PRESETS as ENGINE_PRESETS

from . import charts
from .fit_view import fit_line
from .hardware import device_label, hardware
from .report_view import run_answer_scores, run_report
from .service import Studio
from .settings import adapter_config, mode_value, train_config
from .text import md, metrics_line, time_left

PRESETS = {p.label: p for p in ENGINE_PRESETS.values()}  # "Balanced (r=64)" -> the engine's recipe
DEFAULT_PRESET = ENGINE_PRESETS[ENGINE_DEFAULT].label
CUSTOM = "Custom"
NONE = "(none)"


def model_choices(studio: Studio) -> list[str]:
    return list(studio.policy.allowed_models)


def describe_model(studio: Studio, name: str) -> str:
    info = studio.model_info(name)
    hw = hardware()
    limit = f", up to {info.max_positions} tokens" if info.max_positions else ""
    return (
        f"**{md(info.name)}** loaded: `{info.architecture}` ({info.model_type}, {info.family}), "
        f"{info.parameters / 1e6:.1f}M parameters, hidden size {info.hidden_size}, {info.layers} layers{limit}.  \n"
        f"Suits: {', '.join(info.tasks)}. Training runs on: {hw.training_device} (more at the top of the page)."
    )


def estimate(
    studio: Studio, base: str, bottleneck: int, placement: str, num_labels: int, settings: dict | None = None
) -> str:
    """The trainable parameters and disk size of the adapter the form describes (`settings` adds the
    advanced options and the mode: a head-only or full run trains other parameters)."""
    settings = {**(settings or {}), "bottleneck": bottleneck, "placement": placement}
    mode = mode_value(settings.get("mode"))
    if mode != "adapter":
        return baseline_estimate(studio, base, mode, num_labels)
    est = studio.estimate(base, adapter_config(settings), num_labels)
    return (
        f"**{est['trainable']:,}** trainable parameters = **{est['percent']:.2f}%** of the base.  \n"
        f"Adapter on disk: **{est['adapter_mb']:.2f} MB**, against {est['full_copy_mb']:.0f} MB for a full copy "
        f"of the model ({est['full_copy_mb'] / max(est['adapter_mb'], 1e-9):.0f}x smaller)."
    )


def baseline_estimate(studio: Studio, base: str, mode: str, num_labels: int) -> str:
    info = studio.model_info(base)
    head = info.hidden_size * num_labels + num_labels if num_labels else 0
    if mode == "head":
        return (
            f"**{head:,}** trainable parameters: the classification head alone, on the frozen base "
            "(the floor an adapter must beat)."
        )
    return (
        f"**{info.parameters + head:,}** trainable parameters: every weight of the base (full fine-tuning, "
        "the baseline). Its weights are not kept as an adapter; its curve and metrics go to Compare → Runs."
    )


def running(studio: Studio, owner: str | None, job_id: str | None) -> bool:
    """Whether the caller's run `job_id` is queued or training."""
    if not job_id:
        return False
    try:
        return not studio.jobs.get(job_id, owner=studio.owner(owner)).finished.is_set()
    except AdapterError:  # a run of another process or visitor: not this page's to wait for
        return False


# Training --------------------------------------------------------------------------------------------
def start_training(
    studio: Studio,
    owner: str | None,
    base: str,
    source: dict | None,
    task: str,
    mapping: dict[str, str],
    name: str,
    settings: dict[str, Any],
    cpu_when_away: bool = False,
) -> tuple[str, list[str]]:
    """Queue a run on the caller's loaded data; returns its id and notes on adjusted settings. On ZeroGPU,
    `cpu_when_away` has it go on on the CPU where it would pause (its visitor gone, or out of GPU quota)."""
    config = train_config(base, source, task, mapping, name, settings)
    job, notes = studio.submit(config, owner, continue_from=settings.get("continue_from"), cpu_when_away=cpu_when_away)
    return job.id, notes


def progress(studio: Studio, owner: str | None, job_id: str | None) -> dict[str, Any]:
    """Everything the train tab shows for a job: curve, progress line, queue, and whether it is done."""
    owner = studio.owner(owner)
    if not job_id:
        return {
            "figure": charts.training_curve([], "No run yet"),
            "status": "No run yet: start one above.",
            "queue": queue_text(studio, owner),
            "done": True,
        }
    job = studio.jobs.get(job_id, owner=owner)
    step = job.latest("step")
    training = next((e for e in job.events if e["kind"] == "status" and e.get("status") == "training"), None)
    stopping = job.stop_requested.is_set() and not job.finished.is_set()
    parts = [f"**{md(job.config.name)}**: {'stopping…' if stopping else job.status}"]
    if step and stopping:
        parts.append(f"at step {step['step']}/{step['total_steps']}; saving the adapter as it is now")
    elif step and not job.finished.is_set():
        parts.append(
            f"step {step['step']}/{step['total_steps']}, {time_left(step['eta_s'])} "
            f"(elapsed {_clock(step['elapsed_s'])}, {rate(step['examples_per_sec'])})"
        )
    elif step:
        steps, took = f"{step['step']} of {step['total_steps']}", _clock(wall_time(job.events, step))
        ended = {
            "stopped": f"stopped at step {steps} after {took}; saved",
            "completed": f"{steps} steps in {took}; saved",
        }
        parts.append(ended.get(job.status, f"after step {steps}"))
    elif not job.finished.is_set():
        parts.append(md(charts.phase(job.events)))
        planned = (training or {}).get("info", {}).get("estimated_seconds")
        if planned:
            parts.append(time_left(planned))
    if training:
        parts.append(md(device_label(training["info"]["device"])))
        fit = fit_line(training["info"])
        if fit and not job.finished.is_set():
            parts.append(md(fit))
    last_eval = job.latest("eval")
    if last_eval and metrics_line(last_eval["metrics"]):
        parts.append(metrics_line(last_eval["metrics"]))
    if job.error:
        parts.append(f"**failed:** {md(job.error)}")
    published = job.latest("published")
    if published:
        parts.append(md(published["message"]))
    decision = ((job.latest("done") or {}).get("info") or {}).get("out_of_scope")
    if decision:
        caught = (
            f"; it catches {decision['oos_recall']:.0%} of your out-of-scope examples"
            if "oos_recall" in decision
            else ""
        )
        parts.append(
            f"out-of-scope detection: the {decision['score']} score, set to send "
            f"{decision['false_rejection']:.0%} of in-scope messages to the fallback{caught}"
        )
    parts += [f"⚠ {md(e['message'])}" for e in job.events if e["kind"] == "warning" and e.get("message")]
    done = job.latest("done") if job.finished.is_set() else None
    return {
        "figure": charts.training_curve(job.events, job.config.name),
        "status": " · ".join(parts),
        "queue": queue_text(studio, owner),
        "done": job.finished.is_set(),
        "task": job.config.task,
        "report": run_report(job.run, done),
        "samples": (last_eval or {}).get("info", {}).get("samples") or [],
        "answer_scores": run_answer_scores(job.run, done) if done else None,
    }


def past_runs(studio: Studio, owner: str | None = None) -> list[str]:
    """The caller's runs in the store, newest first, from this process or an earlier one."""
    return [run.id for run in studio.jobs.store.list(owner=studio.owner(owner))]


def show_past_run(studio: Studio, owner: str | None, run_id: str | None) -> dict[str, Any]:
    """One of the caller's runs from the store: its curve, a status line, its per-class report (a finished
    classification run) and whether Resume can go on from its checkpoint."""
    if not run_id:
        raise AdapterError("Pick a past run to show.")
    run = studio.jobs.store.get(run_id, owner=studio.owner(owner))
    status = run.status()
    metrics = status.get("metrics") or {}
    text = f"**{md(run_id)}**: {status['status']}" + (f" · {md(status['message'])}" if status.get("message") else "")
    if metrics_line(metrics):
        text += " · " + metrics_line(metrics)
    if status.get("stopped_early"):
        text += " · stopped early (no better validation score for a while)"
    if status.get("library_name"):
        text += f" · in the library as {md(repr(status['library_name']))}"
    resumable = run.resumable and not studio.jobs.busy(run)
    if resumable:
        text += f" · **Resume** goes on from its checkpoint at step {run.checkpoint_step}"
    return {
        "figure": charts.training_curve(run.events(), run_id),
        "text": text,
        "report": run_report(run) if status.get("status") in ("completed", "stopped") else None,
        "answer_scores": run_answer_scores(run) if status.get("status") in ("completed", "stopped") else None,
        "resumable": resumable,
    }


def resume_run(studio: Studio, owner: str | None, run_id: str | None, cpu_when_away: bool = False) -> str:
    """Queue a stopped or interrupted run of the caller's to go on from its checkpoint; returns its job id."""
    if not run_id:
        raise AdapterError("Pick a past run to resume.")
    return studio.resume(run_id, owner, cpu_when_away=cpu_when_away).id


def queue_text(studio: Studio, owner: str | None = None) -> str:
    """The caller's runs by name; other visitors' runs only as a count."""
    running, queued = studio.jobs.running(), studio.jobs.queued()
    if not running and not queued:
        return "Queue: empty."
    mine = lambda j: owner is None or j.owner == owner  # noqa: E731
    lines = []
    if running:
        lines.append(f"Running: {md(running.config.name)}" if mine(running) else "Running: another visitor's run")
    others = 0
    for i, job in enumerate(queued, 1):
        if mine(job):
            lines.append(f"{i}. queued: {md(job.config.name)}")
        else:
            others += 1
    if others:
        lines.append(f"{others} run(s) of other visitors queued.")
    return "  \n".join(lines)


def drawn_key(studio: Studio, owner: str | None, job_id: str) -> str:
    """What the progress of `job_id` shows depends on only this: a page redraws the chart (and the browser
    re-renders it) when it changes, not on every tick."""
    job = studio.jobs.get(job_id, owner=studio.owner(owner))
    return f"{job.id}:{len(job.events)}:{job.status}:{job.stop_requested.is_set()}:{job.finished.is_set()}"


def reattach(studio: Studio, owner: str | None, remembered: str | None) -> str | None:
    """After a reload: the job this visitor started, else their running one, else their newest."""
    owner = studio.owner(owner)
    known = {j.id: j for j in studio.jobs.jobs(owner=owner)}
    if remembered in known:
        return remembered
    running = studio.jobs.running(owner=owner)
    if running:
        return running.id
    return max(known, default=None)


def stop_training(studio: Studio, owner: str | None, job_id: str | None) -> str:
    if not job_id:
        raise AdapterError("No run to stop.")
    job = studio.jobs.get(job_id, owner=studio.owner(owner))
    if job.finished.is_set():
        return f"That run already finished ({job.status})."
    studio.jobs.stop(job_id, owner=studio.owner(owner))
    return "Stopping after the current step; the adapter is kept."


def wall_time(events: list[dict], step: dict) -> float:
    """A finished run's whole time, loading and evaluations included (what "about N min left" counted),
    from its first event to its end; its training time alone where the events carry no times."""
    done = next((e for e in reversed(events) if e["kind"] == "done"), None)
    if done and done.get("time") and events[0].get("time"):
        return done["time"] - events[0]["time"]
    return step["elapsed_s"]


def rate(examples_per_sec: float) -> str:
    return f"{examples_per_sec:.1f} examples/s" if examples_per_sec < 10 else f"{examples_per_sec:.0f} examples/s"


def _clock(seconds: float) -> str:
    return time.strftime("%M:%S", time.gmtime(max(0, seconds))) if seconds < 3600 else f"{seconds / 3600:.1f} h"
