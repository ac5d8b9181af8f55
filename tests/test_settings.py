"""Settings declared once (adapter_core/settings.py): the CLI's flags generated from them are the ones it
always had, and their bounds are said in words."""

import pytest

from adapter_core import AdapterError
from adapter_core.cli import build_parser
from adapter_core.engine.config import training_settings
from adapter_core.settings import Bounds, check_value


def test_every_setting_keeps_its_flag_type_default_and_choices():
    """Flags generated from the declarations are the ones the CLI always had."""
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert actions["bottleneck"].default == "auto" and actions["bottleneck"].type("auto") is None
    assert actions["batch_size"].type("8") == 8 and actions["epochs"].type("0.5") == 0.5
    assert actions["preset"].type("quick-look") == "Quick look" and actions["preset"].choices == [
        "Quick look", "Balanced", "Capacity",
    ]  # fmt: skip
    assert actions["placement"].choices == ["houlsby", "pfeiffer", "parallel"]
    assert actions["early_stopping_patience"].option_strings == ["--early-stopping-patience"]
    assert actions["init_from"].option_strings == ["--init-from"] and actions["leave_out"].type("0,1") == [0, 1]
    assert actions["text_column"].default is None and actions["base_dropout"].default is False


def test_bounds_are_said_as_they_are_declared():
    assert Bounds(0, low_open=True).words(whole=False) == "a positive number"
    assert Bounds(0, 0.5, True, True).words(whole=False) == "between 0 and 0.5"
    assert Bounds(0, 100).words(whole=True) == "from 0 to 100"
    patience = training_settings()["early_stopping_patience"]
    with pytest.raises(AdapterError, match="early_stopping_patience must be from 0 to 100; got 101"):
        check_value(patience, 101)
    with pytest.raises(AdapterError, match="lr must be a positive number; got nan"):
        check_value(training_settings()["lr"], float("nan"))
