"""The commands' flags for training settings, built from the settings' declarations (adapter_core/settings.py).

Each setting is one flag, `--name-with-dashes`, typed, with its choices, its default ("auto" where the
engine may choose) and its help. A command's own options (--out, --resume) stay with the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from ..errors import AdapterError
from ..settings import Setting


def training_settings() -> dict[str, Setting]:
    from ..engine.config import training_settings

    return training_settings()


def value_type(s: Setting):
    """An argparse type for `s`: "auto" as None where the engine may choose, else the setting's own
    parse (its message on a bad value) or its type (argparse's "invalid int value")."""

    def parse(text: str) -> Any:
        if s.auto and text == "auto":
            return None
        if s.parse is None:
            return s.type(text)
        try:
            return s.parse(text)
        except AdapterError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = s.type.__name__  # argparse names the type in its error message
    return parse


def add_settings(
    parser: argparse.ArgumentParser,
    settings: Iterable[Setting],
    required: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """One flag per setting (the column mapping: one per role), in the declarations' order."""
    from ..engine.config import COLUMN_ROLES

    required, defaults = set(required), defaults or {}
    for s in settings:
        default = defaults.get(s.name, "auto" if s.auto else s.default)
        # "(default: None)" says nothing: the help says what happens when the flag is not given.
        help_text = s.help.replace("%", "%%") + ("%(default).0s" if default is None else "")
        if s.name == "columns":
            for role in COLUMN_ROLES:
                role_help = s.help.replace("each role", f"the {role}") + "%(default).0s"
                parser.add_argument(f"--{role}-column", help=role_help)
        elif s.cli_flag is None:
            continue
        elif s.type is bool:
            parser.add_argument(
                s.cli_flag, dest=s.name, default=s.default, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(
                s.cli_flag,
                dest=s.name,
                type=value_type(s),
                default=default,
                choices=list(s.choices) or None,
                required=s.name in required,
                help=help_text,
            )


def settings_given(args: argparse.Namespace, settings: Iterable[Setting]) -> dict[str, Any]:
    """The settings' values as parsed, by name; the column flags gathered into `columns`."""
    from ..engine.config import COLUMN_ROLES

    values = {}
    for s in settings:
        if s.name == "columns":
            columns = {role: getattr(args, f"{role}_column") for role in COLUMN_ROLES}
            values["columns"] = {k: v for k, v in columns.items() if v}
        elif s.cli_flag is not None:
            values[s.name] = getattr(args, s.name)
    return values


def value_list(flag: str, text: str, s: Setting) -> list:
    """A comma-separated list of a setting's values (a sweep's grid), or an error that names the flag."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if s.type is str:
        return parts
    try:
        values = [s.type(part) for part in parts]
    except ValueError:
        values = []
    if not values:
        what = "whole numbers" if s.type is int else "numbers"
        raise AdapterError(f"{flag} must be {what} separated by commas (like 16,64); got {text!r}.")
    return values
