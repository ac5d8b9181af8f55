"""The Adapter tab's settings as the engine's configs: one place turns the form into a `TrainConfig`.

Start, the run summary and the sweep all build their configs here, so what the summary describes is
what Start and the sweep queue. Values come from a browser or an API caller: each is checked, and a
bad one is refused in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter_core import AdapterConfig, AdapterError, parse_layers
from adapter_core.engine import DEFAULT_PRESET as ENGINE_DEFAULT
from adapter_core.engine import PRESETS as ENGINE_PRESETS
from adapter_core.engine import TrainConfig

# The mode picker's labels, with a line of help each, and the engine's value for each.
MODES = {
    "Adapter": "adapter",
    "Head only": "head",
    "Full fine-tuning": "full",
}
MODE_HELP = (
    "Adapter: a small bottleneck adapter (and a head for classification) learns; the base stays frozen. "
    "· Head only: only the classification head learns, on the frozen base: the floor an adapter must beat. "
    "· Full fine-tuning: every weight of the base learns, the baseline adapters are measured against; "
    "its weights are not kept as an adapter (its curve and metrics go to Compare → Runs)."
)
REPORT_TO = {"none": "None", "tensorboard": "TensorBoard", "mlflow": "MLflow", "trackio": "Trackio"}
PUBLIC_REPORT_TO = ("none", "tensorboard")  # mlflow and trackio would write to a server or service of ours
INITS = ("normal", "kaiming", "xavier", "houlsby")


def mode_value(mode: str | None) -> str:
    """The engine's mode for a picker label (or an engine value, as an API caller may send)."""
    if mode in (None, ""):
        return "adapter"
    if mode in MODES:
        return MODES[mode]
    if mode in MODES.values():
        return mode
    raise AdapterError(f"Mode must be one of {', '.join(MODES)}; got {str(mode)[:40]!r}.")


def report_choices(public: bool) -> list[tuple[str, str]]:
    """(label, value) pairs for the "Report to" picker: a public studio offers no outside trackers."""
    keys = PUBLIC_REPORT_TO if public else tuple(REPORT_TO)
    return [(REPORT_TO[k], k) for k in keys]


def report_help(public: bool) -> str:
    where = "Event files go to the run's folder on the server (tracking/), next to its metrics.jsonl"
    if public:
        return where + "; this public studio offers TensorBoard only."
    return (
        where + ": `tensorboard --logdir ~/.adapter_studio/runs` shows every run. MLflow and Trackio log to "
        "their own local stores and need their packages installed (pip install mlflow / trackio)."
    )


def adapter_config(settings: dict[str, Any]) -> AdapterConfig:
    """The adapter the form describes. Scaling empty (or 0): the placement's default (1, or 4 for parallel)."""
    scaling = _number("Scaling", settings.get("scaling"))
    return AdapterConfig(
        bottleneck=int(_number("Bottleneck", settings["bottleneck"])),
        placement=settings.get("placement") or "houlsby",
        activation=settings.get("activation") or "gelu",
        init=settings.get("init") or "normal",
        scaling=scaling or None,
        leave_out=parse_layers(settings.get("leave_out")),
    )


def _number(what: str, value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AdapterError(f"{what} must be a number; got {str(value)[:40]!r}.") from None
    if not 0 <= number < 1e9:
        raise AdapterError(f"{what} must be zero or more; got {value!r}.")
    return number


def patience(value: Any) -> int:
    """Evaluations without improvement before a run stops early (0: never)."""
    number = _number("Early-stopping patience", value) or 0
    if number != int(number) or number > 100:
        raise AdapterError(f"Early-stopping patience is a whole number of evaluations from 0 to 100; got {value!r}.")
    return int(number)


def preset_name(label: str | None) -> str:
    """The engine's preset for a picker label ("Balanced (r=64)"); Custom settings follow the default recipe."""
    labels = {p.label: p.name for p in ENGINE_PRESETS.values()}
    return labels.get(label, label if label in ENGINE_PRESETS else ENGINE_DEFAULT)


def train_config(
    base: str, source: dict | None, task: str, mapping: dict[str, str], name: str, settings: dict[str, Any]
) -> TrainConfig:
    """The run that Start queues for the loaded `source` with the Adapter tab's `settings`."""
    if not source:
        raise AdapterError("Load a data file first (step 2).")
    if not source.get("ready", True):
        raise AdapterError(f"Pick the columns of {source['name']} first (step 2).")
    adapter = adapter_config(settings)
    name = (name or "").strip() or f"{Path(source['name']).stem}-r{adapter.bottleneck}"
    auto = bool(settings.get("auto", False))  # the engine sizes the run from the data, by the preset's recipe
    given = lambda key, kind: None if auto or settings.get(key) is None else kind(settings[key])  # noqa: E731
    return TrainConfig(
        base=base,
        data=source["path"],
        task=task,
        name=name,
        columns={k: v for k, v in mapping.items() if v},
        adapter=adapter,
        mode=mode_value(settings.get("mode")),
        early_stopping_patience=patience(settings.get("patience")),
        report_to=settings.get("report_to") or "none",
        lr=given("lr", float),
        epochs=given("epochs", float),
        batch_size=given("batch_size", int),
        max_length=int(settings.get("max_length", TrainConfig.max_length)),
        seed=int(settings.get("seed", TrainConfig.seed)),
        preset=preset_name(settings.get("preset")),
    )
