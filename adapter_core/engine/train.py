"""Training, as a torchtune-style recipe: `setup` (recipe.py), the loop (loop.py), `finish` (here).

The same entry point runs on one device or under `accelerate launch` / `torchrun` (DDP): rank 0
alone writes files, every rank trains on its shard of each batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_json_atomic
from ..catalog import Base
from ..errors import AdapterError
from ..inject import get_record, list_adapters, remove_adapter, trainable_summary
from ..out_of_scope import Detector
from . import checkpoint
from .answer_scores import ANSWER_SCORES_FILE, END_OF_RUN_TOKENS, ScoreSettings, score_pairs
from .calibration import Predictions, calibrate, fit, oos_predictions, predictions
from .config import Event, TrainConfig
from .loop import RunState, run_loop, save_weights, training_meta
from .plan import Plan, training_warnings
from .report import REPORT_FILE, report_from
from .run_time import seconds_left
from .setup import Recipe, TaskModel, multi_cpu, precision_for, setup
from .sliced_loop import SLICED_DEVICE, Lease, run_sliced_loop

__all__ = ["Event", "TaskModel", "TrainConfig", "TrainResult", "multi_cpu", "precision_for", "train"]


@dataclass
class TrainResult:
    status: str  # completed | stopped
    adapter_dir: Path
    metrics: dict[str, float]
    steps: int
    train_seconds: float
    examples_per_sec: float
    base: Base | None = field(default=None, repr=False)  # the trained model, in memory (a shared base: without it)
    plan: Plan | None = None  # the settings the run used, and which of them were chosen automatically
    warnings: list[str] = field(default_factory=list)  # before and after training, in words
    stopped_early: bool = False
    report: dict[str, Any] | None = None  # classification: the per-class evaluation on the validation split
    trainable: int = 0  # trained parameters
    paused: str | None = None  # why a sliced run paused at its checkpoint (resumable), in words
    answer_scores: dict[str, Any] | None = None  # instruction: validation answers scored, beside the base's


def train(
    config: TrainConfig,
    out_dir: str | Path,
    on_event: Callable[[Event], None] = lambda e: None,
    should_stop: Callable[[], bool] = lambda: False,
    base: Base | None = None,
    resume: bool = False,
    lease: Lease | None = None,
) -> TrainResult:
    """Train adapter `config.name` and write it (the best checkpoint by validation) to `out_dir/adapter`.

    With `base`, the run adds its adapter to that loaded base and takes it off again at the end, after
    saving (modes adapter and head). With `resume`, it goes on from `out_dir/checkpoint/`, where a
    stopped or interrupted run left off, and ends as the run would have ended uninterrupted. With `lease`,
    the steps run in slices that `lease` runs elsewhere (a GPU lent per call: `sliced_loop`)."""
    out_dir = Path(out_dir)
    if resume and config.mode == "full":
        raise AdapterError("A full fine-tune keeps no checkpoint to resume from; start it again instead.")
    sliced = lease is not None and config.mode != "full"  # a full fine-tune's base is no slice's argument
    r = setup(config, out_dir, on_event, base, sliced)
    try:
        state = resume_state(r) if resume else RunState()
        announce(r, resumed_at=state.step if resume else None, device=SLICED_DEVICE if sliced else None)
        if sliced:
            run_sliced_loop(r, state, should_stop, lease)
        else:
            run_loop(r, state, should_stop)
        return finish(r, state)
    except torch.cuda.OutOfMemoryError:
        raise AdapterError(
            f"Out of GPU memory at batch size {r.config.batch_size} and max length {r.config.max_length}. "
            "Lower the batch size or the max length (or raise grad_accum to keep the effective batch)."
        ) from None
    finally:
        release(r)


def announce(r: Recipe, resumed_at: int | None = None, device: str | None = None) -> None:
    """The "training" status: what trains, on what (`device`, else the accelerator's), by which plan (and,
    resumed, from which step); then the plan's warnings."""
    acc, plan = r.accelerator, r.plan
    device = device or (torch.cuda.get_device_name() if acc.device.type == "cuda" else str(acc.device))
    summary = trainable_summary(r.model, r.config.name)
    percent = 100 * r.trainable / summary.base_params
    info = {
        "device": device,
        "processes": acc.num_processes,
        "mode": r.config.mode,
        "trainable": r.trainable,
        "percent_of_base": percent,
        "size_bytes": summary.size_bytes,
        "train_rows": len(r.train_ds),
        "tokens_per_example": round(r.shape.tokens, 2),  # with the steps' time: this machine's speed
        "val_rows": len(r.val_ds),
        "preset": plan.preset,
        "batch_size": plan.batch_size,
        "epochs": plan.epochs,
        "lr": plan.lr,
        "steps_per_epoch": r.steps_per_epoch,
        "total_steps": r.total,
        "auto": list(plan.auto),
        "estimated_seconds": plan.estimated_seconds,
        "memory": r.memory,
        "warnings": list(r.warnings),
    }
    per_step = r.seconds_per_step  # measured: it replaces the plan's rough CPU figure
    if per_step is None and plan.estimated_seconds:
        per_step = plan.estimated_seconds / max(plan.total_steps, 1)
    if r.seconds_per_step is not None:
        info["seconds_per_step"] = r.seconds_per_step
    if per_step is not None:  # the whole run from here: steps, evaluations and end-of-run answers
        info["estimated_seconds"] = seconds_left(r.shape, resumed_at or 0, per_step)
    resumed = ""
    if resumed_at is not None:
        info["resumed_at"] = resumed_at
        resumed = f" Resuming at step {resumed_at} of {r.total}."
    message = (
        f"Training {r.trainable:,} parameters ({percent:.2f}% of the base) on {device}, "
        f"{acc.num_processes} process(es): {plan.describe()}{resumed}"
    )
    r.emit(Event("status", status="training", total_steps=r.total, message=message, info=info))
    for warning in r.warnings:  # the plan's, and whether the run fits in memory
        r.emit(Event("warning", message=warning, info={"when": "start"}))


def resume_state(r: Recipe) -> RunState:
    saved, best = checkpoint.load(r.accelerator, r.out_dir, r.config.to_dict(), r.params)
    return RunState.restore(saved, best)


def finish(r: Recipe, s: RunState) -> TrainResult:
    """Best weights back in place (a stopped run keeps its last), calibration and the per-class report for
    classification, the end-of-run warnings, and the adapter saved once with its final metadata."""
    r.accelerator.wait_for_everyone()
    c = r.config
    if s.status == "completed" and s.best_state is not None:
        with torch.no_grad():
            for p, best in zip(r.params, s.best_state, strict=True):
                p.copy_(best)
    kept_step, metrics = (s.best_step, s.best) if s.status == "completed" else (s.step, s.last)
    r.model.eval()
    out_of_scope = report = None
    if r.main and c.task == "classification":
        scores = predictions(r.model, c.name, r.val_ds, r.base.tokenizer.pad_token_id)  # one pass serves both
        if c.mode != "full" and not s.paused:  # a saved adapter's; a paused run calibrates when it ends
            out_of_scope = calibrate_router(r, scores)
        report = report_from(scores, list(r.val_frame["text"]), r.labels)
        write_json_atomic(r.out_dir / REPORT_FILE, report)
    # A paused or stopped run is scored when it ends (a Stop should not wait minutes for answers).
    scores = None if s.paused or s.status == "stopped" else end_of_run_scores(r)
    warnings = r.warnings + [m for m in (s.early_message, s.paused) if m] + end_warnings(r, s)
    meta = training_meta(r, s, s.status, kept_step, metrics)
    meta["training"].update(total_steps=s.step, best_step=s.best_step, stopped_early=s.stopped_early)
    meta.update({"answer_scores": scores} if scores else {})
    save_weights(r, {**meta, **({"out_of_scope": out_of_scope} if out_of_scope else {})})
    if r.main and s.status == "completed":
        checkpoint.remove(r.out_dir)  # nothing left to resume
    result = TrainResult(
        s.status,
        r.out_dir / "adapter",
        metrics or {},
        s.step,
        s.train_time,
        s.examples / max(s.train_time, 1e-9),
        base=r.base,
        plan=r.plan,
        warnings=warnings,
        stopped_early=s.stopped_early,
        report=report,
        trainable=r.trainable,
        paused=s.paused,
        answer_scores=scores,
    )
    info: dict[str, Any] = {
        "warnings": warnings, "stopped_early": s.stopped_early, "best_step": s.best_step, "trainable": r.trainable
    }  # fmt: skip
    if out_of_scope:
        info["out_of_scope_threshold"] = out_of_scope["threshold"]
        info["out_of_scope"] = {
            k: out_of_scope[k] for k in ("score", "false_rejection", "oos_recall") if k in out_of_scope
        }
    if s.paused:
        info["paused"] = s.paused
    if report:
        info["report"] = report
    if scores:
        info["answer_scores"] = scores
    r.emit(
        Event(
            "done",
            status=s.status,
            step=s.step,
            total_steps=r.total if s.status == "stopped" else s.step,  # the budget or patience may end it early
            metrics=metrics,
            elapsed_s=s.train_time,
            examples_per_sec=result.examples_per_sec,
            info=info,
        )
    )
    return result


def calibrate_router(r: Recipe, val: Predictions) -> dict[str, Any]:
    """The router's out-of-scope decision: the distance scores' statistics from a pass over the training
    rows, the threshold from the validation rows (and the out-of-scope examples, when given). The
    decision goes on the adapter's record, so that the saved adapter carries it and `classify` uses it."""
    c, tokenizer = r.config, r.base.tokenizer
    start = time.perf_counter()
    stats = fit(r.model, c.name, r.train_ds, tokenizer.pad_token_id, len(r.labels), seed=c.seed)
    oos = oos_predictions(r.model, c.name, c.oos_data, tokenizer, c.max_length, r.labels) if c.oos_data else None
    section = calibrate(val, stats, c.oos_score, c.false_rejection, oos)
    section["fit_seconds"] = round(time.perf_counter() - start, 2)
    get_record(r.model, c.name).detector = Detector(section["score"], section["threshold"], stats)
    return section


def end_of_run_scores(r: Recipe) -> dict[str, Any] | None:
    """An instruction adapter's answers to the first `score_pairs` validation pairs, and the bare base's,
    scored (`answer_scores`) in one mixed batch with a short budget, so a CPU run stays quick. The answers
    go to the run's answer_scores.json; the scores and their settings are returned."""
    c = r.config
    if not (r.main and c.task == "instruction" and c.mode != "full" and c.score_pairs):
        return None
    settings = ScoreSettings(max_new_tokens=END_OF_RUN_TOKENS, max_pairs=c.score_pairs)
    result = score_pairs(r.model, r.base.tokenizer, r.val_frame, [c.name, None], settings)
    write_json_atomic(r.out_dir / ANSWER_SCORES_FILE, result)
    return {k: v for k, v in result.items() if k != "answers"}


def end_warnings(r: Recipe, s: RunState) -> list[str]:
    """A completed run's warnings about what its evaluations show (emitted as well)."""
    if s.status != "completed":
        return []
    # A run that stopped early planned no more steps than it made: it stopped because it had learned.
    planned = s.step if s.stopped_early else r.plan.total_steps
    warnings = training_warnings(r.config.task, s.evals, s.step, planned_steps=planned)
    for warning in warnings:
        r.emit(Event("warning", message=warning, info={"when": "end"}))
    return warnings


def release(r: Recipe) -> None:
    """Close the trackers; take this run's adapter off a shared base, whatever happened."""
    r.accelerator.end_training()
    if r.shared and r.config.name in list_adapters(r.base.model):
        remove_adapter(r.base.model, r.config.name)
