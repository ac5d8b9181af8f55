"""Shared timing helpers: medians over interleaved repeats, with the spread printed beside them."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def device_name() -> str:
    """The card the figures come from, for the report."""
    return torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"


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


def in_child(module: str, call: str) -> dict | None:
    """`module.call` evaluated in a fresh Python process (run from the repository root), its JSON printout
    parsed: peak memory must be measured where nothing else has run."""
    code = f"import sys, json; sys.path.insert(0, 'bench'); import {module} as m\nprint(json.dumps(m.{call}))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_mib(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def peak_of(run: Callable[[], object]) -> dict:
    """Peak memory while `run` runs, and its rise above the memory in use before (activations, gradients,
    optimizer state), in MiB: `max_memory_allocated` on GPU, else the process's RSS high-water mark.

    VmHWM is reset to the current RSS first. (`ru_maxrss` would not do: a child started by fork + exec
    inherits its parent's peak.)
    """
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
    run()
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else _status_mib("VmHWM")
    return {"peak_mib": round(peak, 1), "above_model_mib": round(peak - before, 1)}


def peak_text(row: dict) -> str:
    """The peak-memory part of a printed row; empty when memory was not measured."""
    if "peak_mib" not in row:
        return ""
    return f", peak {row['peak_mib']} MiB ({row['above_model_mib']} MiB above the model)"
