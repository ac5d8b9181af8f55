"""The training loop, explicit: steps, evaluations, the best weights, checkpoints, early stopping, stop
requests and the time budget. `RunState` is everything the loop changes, and what a checkpoint saves."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..inject import train_mode
from ..io import save_adapter
from . import checkpoint
from .config import Event
from .metrics import evaluate, is_better
from .run_time import seconds_left
from .sample_answers import answer_samples
from .setup import Recipe
from .tracking import log_metrics

# What a checkpoint's state.json keeps of a RunState (the rest is rebuilt or lives in tensors).
SAVED = ("step", "epoch", "position", "examples", "train_time", "best", "best_step", "bad_evals", "evals")


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of this epoch already consumed (by this process)
    examples: int = 0
    train_time: float = 0.0  # seconds of training, evaluations excluded
    status: str = "completed"  # completed | stopped
    finished: bool = False
    stopped_early: bool = False
    early_message: str | None = None  # why it stopped early, in words
    best: dict[str, float] | None = None
    best_step: int = 0
    best_state: list[torch.Tensor] | None = None  # the best weights, in the order of Recipe.params
    bad_evals: int = 0  # evaluations since the best one
    paused: str | None = None  # why the run paused (its GPU lease was refused, its visitor left), in words
    evals: list[dict[str, float]] = field(default_factory=list)
    last: dict[str, float] | None = None  # the latest evaluation's metrics
    losses: list[float] = field(default_factory=list)  # since the last step event
    base_answers: list[str] | None = None  # the bare base's answers to the sample prompts, computed once
    eval_seconds: list[float] = field(default_factory=list)  # each evaluation's time in this process, for time left

    def saved(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SAVED} | {"base_answers": self.base_answers}

    @classmethod
    def restore(cls, saved: dict[str, Any], best_state: list[torch.Tensor] | None) -> RunState:
        state = cls(**{k: saved[k] for k in SAVED}, best_state=best_state)
        state.base_answers = saved.get("base_answers")
        return state


def run_loop(r: Recipe, s: RunState, should_stop: Callable[[], bool]) -> None:
    """Train from `s` until the planned steps, the time budget, early stopping or a stop request."""
    start = time.perf_counter() - s.train_time
    r.task_model.train()
    # A fully fine-tuned base trains, dropout and all; a frozen one may stay deterministic.
    train_mode(r.model, r.config.base_dropout or r.config.mode == "full")
    while not s.finished and s.step < r.total:
        for batch in epoch_batches(r, s):
            loss = train_step(r, batch)
            s.losses.append(loss)
            s.position += 1
            s.examples += len(batch["input_ids"]) * r.accelerator.num_processes
            if not r.accelerator.sync_gradients:
                continue
            r.scheduler.step()
            s.step += 1
            s.train_time = time.perf_counter() - start
            report_step(r, s)
            stop = should_stop()
            out_of_time = bool(r.config.max_seconds) and s.train_time >= r.config.max_seconds
            if stop or out_of_time or s.step >= r.total or s.step % r.eval_every == 0:
                paused = time.perf_counter()
                evaluate_step(r, s, stop=stop, last=stop or out_of_time or s.step >= r.total)
                start += time.perf_counter() - paused  # evaluation time is not training time
            if stop or out_of_time or s.step >= r.total or s.stopped_early:
                s.finished = True
                break
        else:
            s.epoch, s.position = s.epoch + 1, 0


def epoch_batches(r: Recipe, s: RunState):
    """This epoch's batches in their (seed, epoch) order, less those a resumed run already trained on."""
    r.sampler.set_epoch(s.epoch)
    r.loader.set_epoch(s.epoch)  # accelerate's loader re-sets the sampler's epoch from its own count
    if s.position:
        return r.accelerator.skip_first_batches(r.loader, s.position)
    return r.loader


def train_step(r: Recipe, batch: dict[str, torch.Tensor]) -> float:
    acc = r.accelerator
    with acc.accumulate(r.task_model):
        loss = r.task_model(**batch)
        acc.backward(loss)
        if acc.sync_gradients:
            acc.clip_grad_norm_(r.params, r.config.max_grad_norm)
        r.optimizer.step()
        r.optimizer.zero_grad()
    return float(loss.detach())


def report_step(r: Recipe, s: RunState, lr: float | None = None) -> None:
    """The step event of step `s.step` (with `lr`: the rate it trained at, where the scheduler here has
    moved on, as after a GPU slice)."""
    loss = sum(s.losses) / len(s.losses)
    lr = r.scheduler.get_last_lr()[0] if lr is None else lr
    s.losses = []
    r.emit(
        Event(
            "step",
            step=s.step,
            total_steps=r.total,
            epoch=s.step / r.steps_per_epoch,
            loss=loss,
            lr=lr,
            examples_per_sec=s.examples / max(s.train_time, 1e-9),
            elapsed_s=s.train_time,
            eta_s=seconds_left(r.shape, s.step, s.train_time / s.step, s.eval_seconds),
        )
    )
    log_metrics(r.accelerator, {"train/loss": loss, "train/lr": lr}, s.step)


def evaluate_step(r: Recipe, s: RunState, stop: bool, last: bool) -> None:
    """Evaluate; keep the best weights; count towards early stopping; save the adapter and checkpoint.

    An evaluation made only because a stop was asked for does not count: the run resumed from it then
    ends as the run that was never stopped. It is the validation pass alone (no sample answers, which
    take minutes on a CPU), so that a Stop ends the run soon after its current step."""
    c, began = r.config, time.perf_counter()
    pad_id = r.base.tokenizer.pad_token_id
    metrics = evaluate(r.model, c.name, c.task, r.val_ds, pad_id, num_labels=len(r.labels or []))
    samples = None
    if c.task == "instruction" and c.sample_prompts and r.main and not stop:
        samples, s.base_answers = answer_samples(
            r.model, r.base.tokenizer, c.name, r.val_frame, c.sample_prompts, s.base_answers
        )
    if not stop:  # a stop's evaluation is the validation pass alone: not what the next ones cost
        s.eval_seconds.append(time.perf_counter() - began)
    record_eval(r, s, metrics, samples, stop=stop, last=last)


def record_eval(r: Recipe, s: RunState, metrics: dict[str, float], samples, stop: bool, last: bool) -> None:
    """An evaluation's consequences, wherever it was computed: the event, the best weights, early
    stopping, the saved adapter and the checkpoint."""
    s.last, info = metrics, ({"samples": samples} if samples is not None else None)
    epoch = s.step / r.steps_per_epoch
    r.emit(Event("eval", step=s.step, total_steps=r.total, epoch=epoch, metrics=metrics, info=info))
    log_metrics(r.accelerator, {f"eval/{k}": v for k, v in metrics.items()}, s.step)
    if not stop or s.step % r.eval_every == 0 or s.step >= r.total:  # one the run would have made anyway
        keep_best(r, s, metrics, last=last)
    if stop:  # the weights as they are now are what a stopped run keeps (saved by the finish phase)
        s.status = "stopped"
    if stop or not (last or s.stopped_early):
        save_checkpoint(r, s)


def keep_best(r: Recipe, s: RunState, metrics: dict[str, float], last: bool) -> None:
    """Count the evaluation: a better one becomes the best (saved, so an interrupted run has it); a
    worse one brings early stopping closer."""
    s.evals.append(metrics)
    if is_better(r.config.task, metrics, s.best):
        s.best, s.best_step, s.bad_evals = metrics, s.step, 0
        s.best_state = [p.detach().clone() for p in r.params]
        if not last:  # the finish phase saves the last one, with its final metadata
            save_weights(r, training_meta(r, s, "running", s.step, metrics))
        return
    s.bad_evals += 1
    patience = r.config.early_stopping_patience
    if patience and s.bad_evals >= patience and not last:
        stop_early(r, s)


def stop_early(r: Recipe, s: RunState) -> None:
    s.stopped_early = True
    metric = "accuracy" if r.config.task == "classification" else "loss"
    s.early_message = (
        f"Stopped early at step {s.step}: validation {metric} did not improve for {s.bad_evals} "
        f"evaluations; the best checkpoint (step {s.best_step}) is kept."
    )
    info = {"when": "end", "stopped_early": True, "best_step": s.best_step}
    r.emit(Event("warning", step=s.step, message=s.early_message, info=info))


def training_meta(r: Recipe, s: RunState, status: str, step: int, metrics: dict[str, float] | None) -> dict:
    """The adapter's metadata about its training (`extra` for save_adapter)."""
    return {
        "base_model": r.config.base,
        "train_config": r.config.to_dict(),
        "training": {
            "auto": list(r.plan.auto),  # the train_config settings that the plan chose
            "status": status,
            "step": step,  # the step these weights are from
            "metrics": metrics,
            "train_seconds": round(s.train_time, 2),
        },
    }


def save_weights(r: Recipe, meta: dict[str, Any]) -> None:
    """Save the adapter as it is now, with `meta` (rank 0; a full fine-tune is no adapter: it stays in memory)."""
    if r.main and r.config.mode != "full":
        save_adapter(r.model, r.config.name, r.out_dir / "adapter", extra=meta)


def save_checkpoint(r: Recipe, s: RunState) -> None:
    if r.config.mode != "full":
        state = {**s.saved(), "config": r.config.to_dict()}
        checkpoint.save(r.accelerator, r.out_dir, state, r.params, s.best_state)
