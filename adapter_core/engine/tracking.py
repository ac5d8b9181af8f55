"""Experiment tracking through accelerate's trackers: TensorBoard, MLflow or Trackio, never a logger of our own.

A run with `report_to` set logs its settings once, the training loss and learning rate at each step and
the validation metrics at each evaluation; TensorBoard writes its event files to `<run>/tracking/<name>/`.
accelerate silently drops a tracker whose package is missing, so `require_tracker` says so first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_trackio_available

from ..errors import AdapterError

REPORT_TO = ("none", "tensorboard", "mlflow", "trackio")
_AVAILABLE = {"tensorboard": is_tensorboard_available, "mlflow": is_mlflow_available, "trackio": is_trackio_available}
TRACKING_DIR = "tracking"


def require_tracker(report_to: str) -> None:
    """Refuse an unknown tracker, or one whose package is not installed, in words."""
    if report_to not in REPORT_TO:
        raise AdapterError(f"report_to must be one of {', '.join(REPORT_TO)}; got {report_to!r}.")
    if report_to != "none" and not _AVAILABLE[report_to]():
        raise AdapterError(f"Tracking with {report_to} needs the {report_to} package: pip install {report_to}")


def accelerator_options(report_to: str, out_dir: Path) -> dict[str, Any]:
    """What `Accelerator(...)` needs to log to `report_to` (nothing for "none")."""
    if report_to == "none":
        return {}
    return {"log_with": report_to, "project_dir": str(out_dir / TRACKING_DIR)}


def start_tracking(accelerator, name: str, config: dict[str, Any], out_dir: Path) -> None:
    """Open the run's trackers (on the main process; accelerate sees to that) with its settings."""
    if not accelerator.log_with:
        return
    kwargs = {"mlflow": {"logging_dir": str(out_dir / TRACKING_DIR)}}
    accelerator.init_trackers(name, config=hparams(config), init_kwargs=kwargs)


def hparams(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested settings dict flattened to what every tracker stores: `adapter.bottleneck`, and text for
    None (auto), lists and mappings."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value) and key == "adapter":
            out.update(hparams(value, f"{prefix}{key}."))
        elif value is None:
            out[prefix + key] = "auto" if key in ("batch_size", "epochs", "lr", "pooling") else "none"
        elif isinstance(value, (bool, int, float, str)):
            out[prefix + key] = value
        else:
            out[prefix + key] = json.dumps(value, sort_keys=True)
    return out


def log_metrics(accelerator, values: dict[str, float], step: int) -> None:
    if accelerator.log_with:
        accelerator.log(values, step=step)
