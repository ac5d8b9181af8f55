"""What a training token costs on this machine, as its latest run of a base measured it.

The plan's CPU figure (`plan.CPU_SECONDS_PER_TOKEN`) was measured on one machine, and another machine, or
the same one on a busier day, differs from it by two times or more (bench/RESULTS.md, "One time estimate").
Once a base has trained here, the estimate before Start therefore takes that run's own step time instead.
The plan's sizing (batch size, epochs) stays on the fixed figure: a run's settings must not depend on how
busy the machine was the last time.
"""

from __future__ import annotations

from collections.abc import Iterable

from .runs import Run

# A run of fewer steps is mostly its first, slower passes: too little to stand for the machine.
MIN_STEPS = 10
MEASURED_STATUSES = ("completed", "stopped")


def per_token(train_seconds: float, steps: int, batch: int, tokens: float) -> float:
    """Seconds per training token of `steps` optimizer steps of `batch` examples of `tokens` tokens."""
    return train_seconds / (steps * batch * tokens)


def per_token_of(run: Run) -> float | None:
    """Seconds per training token of a finished run on this machine's CPU, in one process: its training
    time (evaluations excluded) over the tokens its steps read. None where the run cannot say."""
    status = run.status()
    steps, seconds = status.get("steps"), status.get("train_seconds")
    if status.get("status") not in MEASURED_STATUSES or not _positive(seconds):
        return None
    if not isinstance(steps, int) or steps < MIN_STEPS:
        return None
    training = next((e for e in run.events() if e.get("kind") == "status" and e.get("status") == "training"), None)
    info = (training or {}).get("info") or {}
    tokens, batch = info.get("tokens_per_example"), info.get("batch_size")
    if info.get("device") != "cpu" or info.get("processes") != 1 or not _positive(tokens) or not _positive(batch):
        return None
    return per_token(seconds, steps, batch * (run.config().get("grad_accum") or 1), tokens)


def measured_per_token(runs: Iterable[Run], base: str) -> float | None:
    """Seconds per training token of the run of `base` among `runs` that finished last and can measure
    this machine; None when none has yet."""
    mine = [run for run in runs if run.config().get("base") == base]
    mine.sort(key=lambda run: _number(run.status().get("finished")), reverse=True)
    return next((figure for run in mine if (figure := per_token_of(run)) is not None), None)


def _number(value: object) -> float:
    return float(value) if _positive(value) else 0.0


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
