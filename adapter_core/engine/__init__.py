"""The training engine: data in, an explicit training loop, background jobs and the run store.

    from adapter_core.engine import JobManager, TrainConfig, load_data

This face is what the layers above (the studio) use; the modules behind it are internal. A name loads
its module on first use, so importing one module of the engine (the run store, say) does not import all
of it (the loop, accelerate, datasets). No name here is also a module's name: the import system binds a
submodule on its package when it loads, which would replace a face name of the same spelling. So the
training function itself stays `adapter_core.engine.train.train`.
"""

from __future__ import annotations

import importlib
from typing import Any

# module -> the names it gives the face
_FACE = {
    "answer_scores": (
        "ANSWER_SCORES_FILE",
        "SCORE_NAMES",
        "ScoreSettings",
        "score_file",
        "scores_markdown",
        "scores_settings_line",
    ),
    "batches": ("tokenize",),
    "calibration": ("oos_texts",),
    "config": ("COLUMN_ROLES", "TrainConfig", "training_settings"),
    "data": (
        "MAX_BYTES",
        "OPTIONAL",
        "REQUIRED",
        "describe_lengths",
        "detect_columns",
        "load_data",
        "read_table",
        "split",
        "validate",
    ),
    "evaluation": ("evaluate_file",),
    "hub_data": ("dataset_ref", "describe_dataset", "hub_tables", "is_hub_data"),
    "jobs": ("Job", "JobManager"),
    "leases": ("SliceBroker",),
    "machine_speed": ("measured_per_token",),
    "memory_fit": ("check_fit", "estimate_memory", "gib"),
    "metrics": ("rank_key",),
    "plan": ("DEFAULT_PRESET", "PRESETS", "Plan", "plan_training", "task_lr"),
    "report": ("REPORT_FILE", "correct"),
    "run_time": ("planned_seconds",),
    "runs": ("ACTIVE", "Run", "RunStore"),
    "sliced_loop": ("MAX_LEASE", "Paused", "SLICE_SECONDS", "SLICED_DEVICE", "gpu_seconds"),
    "slices": ("SliceResult", "SliceSpec", "run_slice"),
    "sweep": ("run_sweep", "sweep_configs"),
    "sweep_executor": ("SweepExecutor",),
    "sweep_store": ("SweepRecord",),
    "token_roles": ("token_view",),
}
_HOME = {name: module for module, names in _FACE.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
