"""The Adapter tab's settings as the engine's configs: one place turns the form into a `TrainConfig`.

Which settings the form has, their labels, help, choices and bounds come from their declarations
(`adapter_core/settings.py`, on `AdapterConfig` and `TrainConfig`). Start, the run summary and the sweep
all build their configs here, so what the summary describes is what Start and the sweep queue. Values
come from a browser or an API caller: each is checked, and a bad one is refused in words.
"""

from __future__ import annotations

import copy
import math
from functools import cache
from pathlib import Path
from typing import Any

from adapter_core import AdapterConfig, AdapterError, Setting
from adapter_core.engine import DEFAULT_PRESET as ENGINE_DEFAULT
from adapter_core.engine import PRESETS as ENGINE_PRESETS
from adapter_core.engine import TrainConfig, training_settings

AUTO = "auto"  # the form's own toggle: size the run from the data (the settings declared auto="plan")
CONTINUE = "continue_from"  # names an adapter of the caller's library; the service turns it into init_from


@cache
def form_settings() -> dict[str, Setting]:
    """The settings the Adapter tab shows, by their studio key, in the declarations' order."""
    return {s.key: s for s in training_settings().values() if s.studio}


def sweep_settings() -> dict[str, Setting]:
    """The form's settings a sweep's runs take from it (a sweep sets the others itself)."""
    return {k: s for k, s in form_settings().items() if s.sweep != "no"}


def grid_settings() -> dict[str, Setting]:
    """The settings a sweep may vary, each a list of values to try."""
    return {k: s for k, s in form_settings().items() if s.sweep == "vary"}


def sized_keys() -> tuple[str, ...]:
    """What "Size the run from the data" chooses: the settings the engine's plan sizes when they are auto."""
    return tuple(k for k, s in form_settings().items() if s.auto == "plan")


def choices_for(s: Setting, public: bool) -> list:
    """A picker's choices: (label, value) pairs where the setting names its choices; a public studio's
    own subset where it has one."""
    values = s.public_choices if public and s.public_choices else s.choices
    return [(s.labels[v], v) for v in values] if s.labels else list(values)


def info_for(s: Setting, public: bool, value: Any = None) -> str:
    """An input's info line: the setting's help, after `value` in plain words where the setting says it
    ("Medium adapter, r = 64. How much the adapter can learn..."), and a public studio's subset of choices."""
    text = s.help
    if s.describe is not None and value is not None and (words := s.describe(value)):
        text = f"{words}. {text}"
    if public and s.public_choices:
        shown = [s.labels[v] if s.labels else v for v in s.public_choices if v != s.default]
        return f"{text}. This public studio offers {', '.join(shown)} only."
    return text


def mode_value(mode: str | None) -> str:
    """The engine's mode for a picker label (or an engine value, as an API caller may send)."""
    return form_value(form_settings()["mode"], mode)


def preset_name(label: str | None) -> str:
    """The engine's preset for a picker label ("Balanced (r=64)"); Custom settings follow the default recipe."""
    labels = {p.label: p.name for p in ENGINE_PRESETS.values()}
    return labels.get(label, label if label in ENGINE_PRESETS else ENGINE_DEFAULT)


def patience(value: Any) -> int:
    """Evaluations without improvement before a run stops early (0: never)."""
    return form_value(form_settings()["patience"], value)


def form_value(s: Setting, value: Any) -> Any:
    """A form value (from the browser or an API caller) as the config takes it, or an error in words.
    Empty is the default; an optional number's 0, where 0 is no value of it, is the default too."""
    if value is None or (isinstance(value, str) and not value.strip() and s.type is not list):
        return copy.copy(s.default)
    if s.parse is not None and s.type is list:
        return s.parse(value)
    if s.type is bool:
        return bool(value)
    if s.type is str:
        value = str(value)
        if s.labels:  # the picker sends a label; an API caller may send the engine's value
            names = {label: v for v, label in s.labels.items()}
            if value not in names and value not in s.labels:
                raise AdapterError(f"{s.title} must be one of {', '.join(names)}; got {value[:40]!r}.")
            return names.get(value, value)
        return value
    return _number(s, value)


def _number(s: Setting, value: Any) -> int | float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise AdapterError(f"{s.title} must be a number; got {str(value)[:40]!r}.")
    if number == 0 and s.optional and not s.auto and s.bounds and not s.bounds.holds(0):
        return None
    whole = s.type is int
    if whole and not number.is_integer():
        words = f", {s.bounds.words(whole=True)}" if s.bounds else ""
        raise AdapterError(f"{s.title} is a whole number{words}; got {value!r}.")
    if s.bounds and not s.bounds.holds(number):
        raise AdapterError(f"{s.title} must be {s.bounds.words(whole)}; got {value!r}.")
    return int(number) if whole else number


def config_values(settings: dict[str, Any]) -> dict[str, Any]:
    """The form's settings (by studio key, any of them absent) as config values by setting name. With
    `auto`, the settings the plan sizes are left to it; the preset's label becomes its name."""
    auto = bool(settings.get(AUTO, False))
    values = {}
    for key, s in form_settings().items():
        if key == CONTINUE:
            continue
        value = None if auto and s.auto == "plan" else form_value(s, settings.get(key))
        values[s.name] = preset_name(settings.get(key)) if s.name == "preset" else value
    return values


def adapter_config(settings: dict[str, Any]) -> AdapterConfig:
    """The adapter the form describes. Scaling empty (or 0): the placement's default (1, or 4 for parallel)."""
    adapter = {k: v for k, v in config_values(settings).items() if training_settings()[k].group == "adapter"}
    return TrainConfig.from_settings(adapter).adapter


def train_config(
    base: str, source: dict | None, task: str, mapping: dict[str, str], name: str, settings: dict[str, Any]
) -> TrainConfig:
    """The run that Start queues for the loaded `source` with the Adapter tab's `settings`."""
    if not source:
        raise AdapterError("Load a data file first (step 2).")
    if not source.get("ready", True):
        raise AdapterError(f"Pick the columns of {source['name']} first (step 2).")
    columns = {k: v for k, v in mapping.items() if v}
    given = {"base": base, "data": source["path"], "task": task, "columns": columns, "name": (name or "").strip()}
    if source.get("val_path"):  # a Hub dataset's own validation split
        given["val_data"] = source["val_path"]
    if source.get("oos_path") and task == "classification":  # the Data tab's out-of-scope examples
        given["oos_data"] = source["oos_path"]
    config = TrainConfig.from_settings({**config_values(settings), **given, "name": given["name"] or "adapter"})
    config.name = given["name"] or f"{Path(source['name']).stem}-r{config.adapter.bottleneck}"
    return config


def config_value(config: TrainConfig, s: Setting) -> Any:
    """A setting's value in a config (the adapter's in its own)."""
    return getattr(config.adapter if s.group == "adapter" else config, s.name)
