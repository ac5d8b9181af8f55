"""The bookkeeping a model carries once it has adapters: which exist, their configs, their slots."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from .config import AdapterConfig
    from .out_of_scope import Detector

_ATTR = "_adapter_core_state"
_keys = itertools.count(1)


@dataclass
class AdapterRecord:
    name: str
    config: AdapterConfig
    task: str
    labels: list[str] | None
    pooling: str | None
    bottleneck: int
    slot_keys: list[str]
    # A classifier's out-of-scope decision (saved in its config and beside its weights); None: none calibrated
    detector: Detector | None = None


@dataclass
class AdapterState:
    key: int
    family: str
    base_name: str | None = None
    records: dict[str, AdapterRecord] = field(default_factory=dict)
    slots: dict[str, nn.Module] = field(default_factory=dict)  # key -> the `layers.AdapterSlot` wrapping it
    hooks: dict[str, object] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


def get_state(model: nn.Module) -> AdapterState | None:
    return model.__dict__.get(_ATTR)


def ensure_state(model: nn.Module, family: str) -> AdapterState:
    # A plain attribute, not a submodule: it must not appear in state_dict or move with .to().
    state = get_state(model)
    if state is None:
        state = AdapterState(key=next(_keys), family=family)
        model.__dict__[_ATTR] = state
    return state
