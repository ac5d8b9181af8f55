"""The training loop in slices, for a GPU that is only lent for short calls (ZeroGPU).

The parent holds the run's truth, as in `loop.run_loop`: the step, the data order, the best weights, the
events and the checkpoint. Each slice takes the state out, has `lease` run a few optimizer steps
somewhere else (a forked GPU worker: `slices.run_slice`), and puts the new state back, so that after
every slice the run has a checkpoint, its curve has moved, and a stop or a pause loses nothing. A slice
ends at the next evaluation, which runs in the slice too, or when its time is up.

`lease(spec)` returns the slice's result or raises `Paused` with the reason in words: the run then stops
at its checkpoint, resumable like a stopped run, and ends as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import torch

from ..inject import adapter_parameters
from .config import Event
from .loop import RunState, epoch_batches, record_eval, report_step, save_checkpoint
from .setup import Recipe
from .slices import Batch, SliceResult, SliceSpec

SLICE_SECONDS = 20.0  # the steps of one slice, at the measured step time
STARTUP_SECONDS = 10.0  # a fresh worker loads the base and moves it to the GPU
HEADROOM = 1.5  # a slice's steps and evaluation may take this much longer than measured
MAX_LEASE = 60  # seconds: ZeroGPU's default lease; the ask must fit in what is left of the visitor's quota
SLICED_DEVICE = "GPU slices"  # where a sliced run's steps run, for its "training" status
STOP_FILE = "STOP"  # in the run folder: a slice's worker, in another process, sees it between steps
# Seconds per optimizer step on ZeroGPU's card (an H200), measured once (bench/RESULTS.md, "On a GPU"):
# MiniLM 32 x 64 in bf16, SmolLM2 a batch of 8 instruction rows. Both are bound by kernel launches, not
# arithmetic, so they hardly change with the batch.
GPU_STEP_SECONDS = {"minilm": 0.015, "smollm2-135m-instruct": 0.160}


class Paused(Exception):
    """A slice could not run (its lease was refused, its visitor left); the message says why, in words."""


Lease = Callable[[SliceSpec], SliceResult]


class StepFeed:
    """The run's optimizer steps in order, each its micro-batches, from the run's place in its epoch; steps
    handed out but not taken come back first (a slice that ran out of time)."""

    def __init__(self, r: Recipe, s: RunState):
        self.r, self.epoch, self.position = r, s.epoch, s.position
        self._batches = iter(epoch_batches(r, s))
        self._back: deque[tuple[list[Batch], bool]] = deque()

    def take(self, n: int) -> list[tuple[list[Batch], bool]]:
        """Up to `n` steps as (micro-batches, ends its epoch)."""
        steps = [self._back.popleft() for _ in range(min(n, len(self._back)))]
        while len(steps) < n:
            steps.append(self._next_step())
        return steps

    def give_back(self, steps: list[tuple[list[Batch], bool]]) -> None:
        self._back.extendleft(reversed(steps))

    def _next_step(self) -> tuple[list[Batch], bool]:
        micro: list[Batch] = []
        while len(micro) < self.r.config.grad_accum:
            batch = next(self._batches, None)
            if batch is None:  # the epoch ended: as accelerate does, the last step takes what is left
                self.epoch += 1
                self.r.sampler.set_epoch(self.epoch)
                self.r.loader.set_epoch(self.epoch)
                self._batches = iter(self.r.loader)
                if micro:
                    return micro, True
                continue
            micro.append({k: v.to("cpu") for k, v in batch.items()})
        return micro, False


def run_sliced_loop(r: Recipe, s: RunState, should_stop: Callable[[], bool], lease: Lease) -> None:
    """Train from `s` in leased slices until the planned steps, the time budget, early stopping, a stop
    request or a pause."""
    stop_file = r.out_dir / STOP_FILE
    stop_file.unlink(missing_ok=True)
    feed, per_step, eval_seconds = StepFeed(r, s), r.seconds_per_step or 1.0, 0.0
    while not s.finished and s.step < r.total:
        if should_stop():
            return _stop(r, s)
        steps = feed.take(_steps_for(r, s, per_step))
        spec = _spec(r, s, steps, per_step, eval_seconds, stop_file)
        began = time.perf_counter()
        try:
            result = lease(spec)
        except Paused as e:
            feed.give_back(steps)
            return _pause(r, s, str(e))
        taken = len(result.losses)
        feed.give_back(steps[taken:])
        _apply(r, s, steps[:taken], result, time.perf_counter() - began)
        if taken:
            per_step = result.seconds / taken
        if result.metrics is not None:
            eval_seconds = result.eval_seconds
            s.eval_seconds.append(eval_seconds)
        if result.stopped or should_stop():
            return _stop(r, s)
        out_of_time = bool(r.config.max_seconds) and s.train_time >= r.config.max_seconds
        if result.metrics is not None or out_of_time:
            last = out_of_time or s.step >= r.total
            if result.metrics is None:  # the time budget ended between evaluations: one more, alone
                try:
                    result = lease(_spec(r, s, [], per_step, eval_seconds, stop_file))
                except Paused as e:
                    return _pause(r, s, str(e))
            record_eval(r, s, result.metrics, result.samples, stop=False, last=last)  # saves its checkpoint
            s.finished = last or s.stopped_early
        elif not s.finished:
            save_checkpoint(r, s)
    stop_file.unlink(missing_ok=True)


def gpu_seconds(base: str, total_steps: int) -> float | None:
    """The GPU seconds a sliced run of `total_steps` uses, which is what ZeroGPU charges to its visitor's
    quota: a worker's start and the steps with their headroom (evaluations fit in it). None for a base
    whose GPU step was not measured."""
    step = GPU_STEP_SECONDS.get(base)
    return None if step is None else STARTUP_SECONDS + total_steps * step * HEADROOM


def _steps_for(r: Recipe, s: RunState, per_step: float) -> int:
    """To the next evaluation (or the end), as many as fit in a slice at `per_step` seconds each."""
    to_eval = r.eval_every - s.step % r.eval_every
    return max(1, min(to_eval, r.total - s.step, math.floor(SLICE_SECONDS / max(per_step, 1e-3))))


def _spec(r: Recipe, s: RunState, steps, per_step: float, eval_seconds: float, stop_file: Path) -> SliceSpec:
    own = adapter_parameters(r.model, r.config.name)
    keys = {id(p): k for k, p in own.items()}
    ends_at = s.step + len(steps)
    evaluates = not steps or ends_at % r.eval_every == 0 or ends_at >= r.total
    seconds = len(steps) * per_step * HEADROOM
    spec = SliceSpec(
        config=r.config.to_dict(),
        labels=r.labels,
        keys=[keys[id(p)] for p in r.params],
        weights={k: p.detach().to("cpu").clone() for k, p in own.items()},
        optimizer=r.optimizer.state_dict(),
        scheduler=r.scheduler.state_dict(),
        warmup=int(r.config.warmup_ratio * r.total),
        total=r.total,
        rng=torch.get_rng_state(),
        steps=[micro for micro, _ in steps],
        seconds=seconds,
        stop_file=str(stop_file),
        val=r.val_ds if evaluates else None,
        val_frame=r.val_frame if evaluates and r.config.task == "instruction" else None,
        base_answers=s.base_answers,
    )
    spec.lease = min(MAX_LEASE, math.ceil(STARTUP_SECONDS + seconds + (eval_seconds * HEADROOM if evaluates else 0)))
    return spec


def _apply(r: Recipe, s: RunState, steps, result: SliceResult, wall: float) -> None:
    """The slice's state into the run, and one step event per step it took (their losses and rates)."""
    own = adapter_parameters(r.model, r.config.name)
    with torch.no_grad():
        for key, value in result.weights.items():
            own[key].copy_(value)
    r.optimizer.load_state_dict(result.optimizer)
    r.scheduler.load_state_dict(result.scheduler)
    torch.set_rng_state(result.rng)
    if result.base_answers is not None:
        s.base_answers = result.base_answers
    start = s.train_time
    for i, ((micro, ends_epoch), loss, lr) in enumerate(zip(steps, result.losses, result.lrs, strict=True)):
        s.position += len(micro)
        s.examples += sum(len(b["input_ids"]) for b in micro)
        if ends_epoch:
            s.epoch, s.position = s.epoch + 1, 0
        s.step += 1
        s.train_time = start + wall * (i + 1) / len(steps)
        s.losses = [loss]
        report_step(r, s, lr=lr)


def _stop(r: Recipe, s: RunState) -> None:
    """A stop request: the run keeps the weights it has (no evaluation: it would be CPU time here)."""
    s.status, s.finished = "stopped", True
    save_checkpoint(r, s)
    (r.out_dir / STOP_FILE).unlink(missing_ok=True)


def _pause(r: Recipe, s: RunState, reason: str) -> None:
    s.paused = f"Paused at step {s.step} of {r.total}: {reason}"
    r.emit(Event("warning", step=s.step, message=s.paused, info={"when": "end", "paused": True}))
    _stop(r, s)
