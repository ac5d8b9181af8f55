"""Every training and adapter setting, declared once, on its config field.

A setting is a dataclass field of `AdapterConfig` or `TrainConfig` whose metadata says what the user
needs to know of it: help in plain words, its choices or bounds, whether it may be "auto", the bound a
public studio puts on it, whether a sweep may vary it, and where the studio shows it. `settings_of(cls)`
reads them back as `Setting` records, from which the CLI builds its flags (`adapter_core/cli/args.py`),
the studio its inputs, checks, sweep form and API docs (`studio/settings.py`, `studio/tabs/`), and the
configs their own checks (`check_value`).

    lr: float | None = setting(None, "Step size of each update", auto="plan", bounds=POSITIVE)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from .errors import AdapterError

_KEY = "adapter_studio.setting"


@dataclass(frozen=True)
class Bounds:
    """The values a number may take: from `low` to `high` (either may be open, or absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def words(self, whole: bool) -> str:
        """The bounds as a message says them: "at least 1", "from 0 to 100", "a positive number"."""
        low, high = self.low, self.high
        if whole:  # whole numbers' bounds are closed
            return f"at least {low}" if high is None else f"from {low} to {high:,}"
        if high is None:
            if low == 0:
                return "a positive number" if self.low_open else "zero or more"
            return f"above {low:g}" if self.low_open else f"at least {low:g}"
        if self.low_open and self.high_open:
            return f"between {low:g} and {high:g}"
        start = f"above {low:g}" if self.low_open else f"at least {low:g}"
        return f"{start} and below {high:g}" if self.high_open else f"from {low:g} to {high:g}"


POSITIVE = Bounds(0, low_open=True)
NOT_NEGATIVE = Bounds(0)


@dataclass(frozen=True)
class Setting:
    """One setting, as every surface sees it. `name` is the config field; `key` the studio's and the
    API's name for it (and the saved wizard state's)."""

    name: str
    type: type  # int, float, str, bool, list or dict (None allowed when `optional`)
    default: Any
    help: str  # plain words: the CLI's --help, the studio's info line, the API docs
    label: str = ""  # the studio's label (default: the title)
    choices: tuple[str, ...] = ()
    labels: dict[str, str] | None = None  # how the studio names each choice
    bounds: Bounds | None = None
    auto: str | None = None  # None means auto: "plan" (sized from the data) or "preset" (the preset's)
    typical: Any = None  # where the studio's form starts when the value is not auto
    limit: str | None = None  # the studio Policy's attribute this may not exceed (refused above it)
    public_choices: tuple[str, ...] | None = None  # the choices a public studio offers
    sweep: str = "shared"  # vary: a sweep's grid varies it; shared: every run of a sweep has it; no: not in sweeps
    studio: str | None = None  # where the studio's Adapter tab shows it: main, advanced, or not at all
    key: str = ""
    flag: str | None = None  # the CLI flag (default --name-with-dashes); "" for none
    parse: Callable[[str], Any] | None = None  # text (a flag, a text box) to a value; raises AdapterError
    describe: Callable[[Any], str] | None = None  # a value in plain words, before the help on the studio's info line
    optional: bool = False  # None is a value: auto, or "the default"
    group: str = "train"  # the config that holds it: "adapter" (AdapterConfig) or "train" (TrainConfig)

    @property
    def title(self) -> str:
        """The name a message gives it: "Batch size", "Early stopping patience"."""
        return self.name.replace("_", " ").capitalize()

    @property
    def cli_flag(self) -> str | None:
        return None if self.flag == "" else self.flag or "--" + self.name.replace("_", "-")


def setting(
    default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **declared
):  # noqa: A002
    """A dataclass field declared as a setting (see `Setting` for what may be declared)."""
    meta = {_KEY: {"help": help, **declared}}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@cache
def settings_of(cls: type, group: str = "train") -> dict[str, Setting]:
    """The declared settings of a config dataclass, in field order, by name."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if _KEY not in f.metadata:
            continue
        kind, optional = _kind(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        declared = dict(f.metadata[_KEY])
        s = Setting(name=f.name, type=kind, default=default, optional=optional, group=group, **declared)
        out[f.name] = dataclasses.replace(s, label=s.label or s.title, key=s.key or f.name)
    return out


def _kind(hint: Any) -> tuple[type, bool]:
    """(the value's type, whether None is allowed) of a field's annotation: `int | None` -> (int, True)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _kind(rest[0])[0], True
    return typing.get_origin(hint) or hint, False


# Checking a value --------------------------------------------------------------------------------------
def check_value(s: Setting, value: Any) -> None:
    """`value` must fit `s`: its type, its choices, its bounds; refused in words naming the field."""
    if value is None and s.optional:
        return
    if s.type is bool:
        if not isinstance(value, bool):
            raise AdapterError(f"{s.name} must be true or false; got {value!r}.")
    elif s.type is str:
        if not isinstance(value, str):
            raise AdapterError(f"{s.name} must be text; got {value!r}.")
        if s.choices and value not in s.choices:
            raise AdapterError(f"{s.name} must be one of {', '.join(s.choices)}; got {value!r}.")
    elif s.type is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise AdapterError(f"{s.name} must be a whole number; got {value!r}.")
        if s.bounds and not s.bounds.holds(value):
            raise AdapterError(f"{s.name} must be {s.bounds.words(whole=True)}; got {value!r}.")
    elif s.type is float:
        number = real(value)
        if math.isnan(number) or (s.bounds and not s.bounds.holds(number)):
            words = s.bounds.words(whole=False) if s.bounds else "a number"
            raise AdapterError(f"{s.name} must be {words}; got {value!r}.")


def real(value: Any) -> float:
    """`value` as a float when it is a finite number; NaN otherwise, which fails every bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan
