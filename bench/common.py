"""Shared timing helpers: medians over interleaved repeats, with the spread printed beside them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def sync() -> None:
    """Wait for queued GPU work, so a timer measures the work and not just its launch."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run each function once per round, round after round, so machine noise hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            out[k].append(timed(fn))
    return out


def summary(samples: list[float], scale: float = 1e3) -> dict[str, float]:
    """Median and spread (min, max) in ms by default."""
    return {
        "median": round(statistics.median(samples) * scale, 3),
        "min": round(min(samples) * scale, 3),
        "max": round(max(samples) * scale, 3),
    }
