"""The base models resident for serving: loaded on first use, shared by every visitor, and the ones idle
longest dropped when together they outgrow the policy's memory budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapter_core import Base, load_base
from adapter_core.catalog import CATALOG
from adapter_core.inject import base_parameters

from .policy import Policy


@dataclass
class ModelInfo:
    name: str
    architecture: str
    model_type: str
    family: str
    parameters: int
    hidden_size: int
    layers: int
    tasks: tuple[str, ...]
    max_positions: int | None


def position_limit(config) -> int | None:
    """The longest input the model's position embeddings allow, where the config says."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_bytes(base: Base) -> int:
    return sum(p.numel() * p.element_size() for p in base_parameters(base.model))


class ResidentBases:
    def __init__(self, policy: Policy, on_evict: Callable[[str], None] = lambda name: None):
        self.policy, self.on_evict = policy, on_evict
        self._bases: dict[str, Base] = {}
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    def get(self, name: str) -> Base:
        """Base `name`, if the policy allows it, loaded once however many callers ask at the same time."""
        name = self.policy.check_model(name)
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:
            if name not in self._bases:
                self._bases[name] = load_base(name)
            base = self._bases[name]
        with self._lock:
            self._last_used[name] = time.monotonic()
            self._evict(keep=name)
        return base

    def _evict(self, keep: str) -> None:
        # A request still holding an evicted base finishes on it; the next one loads it again.
        while len(self._bases) > 1 and sum(map(model_bytes, self._bases.values())) > self.policy.model_budget_bytes:
            victim = min((n for n in self._bases if n != keep), key=lambda n: self._last_used.get(n, 0.0))
            del self._bases[victim]
            self.on_evict(victim)

    def names(self) -> list[str]:
        return list(self._bases)

    def info(self, name: str) -> ModelInfo:
        base = self.get(name)
        config = base.model.config
        entry = CATALOG.get(base.name)
        if entry:
            tasks = entry.tasks
        else:
            tasks = ("classification", "instruction") if base.family == "decoder" else ("classification",)
        return ModelInfo(
            base.name,
            type(base.model).__name__,
            config.model_type,
            base.family,
            base.num_parameters,
            config.hidden_size,
            config.num_hidden_layers,
            tasks,
            position_limit(config),
        )
