"""The base models resident for serving, with the library's adapters loaded onto them on demand.

A base loads on first use and is shared by every caller; when together they outgrow the memory budget,
the ones idle longest are dropped. An adapter is loaded once and reloaded only when its weights file
changes, so every replica of a server reading one library folder converges on the same adapters.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..catalog import Base, load_base
from ..inference import Prediction, classify
from ..inject import base_parameters, list_adapters, remove_adapter
from ..io import load_adapter
from ..library import Entry


def model_bytes(base: Base) -> int:
    return sum(p.numel() * p.element_size() for p in base_parameters(base.model))


class ModelPool:
    def __init__(
        self,
        allow: Callable[[str], str] = lambda name: name,
        budget_bytes: float = math.inf,
        on_evict: Callable[[str], None] = lambda name: None,
    ):
        """`allow` checks (and may normalise) a base name before it loads, raising to refuse it."""
        self.allow, self.budget_bytes, self.on_evict = allow, budget_bytes, on_evict
        self._bases: dict[str, Base] = {}
        self._last_used: dict[str, float] = {}
        self._served: dict[tuple[str, str], float] = {}  # (base, adapter) -> weights version loaded
        self._lock = threading.RLock()
        self._load_locks: dict[str, threading.Lock] = {}

    def get(self, name: str) -> Base:
        """Base `name`, if allowed, loaded once however many callers ask at the same time."""
        name = self.allow(name)
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

    def serve(self, entry: Entry) -> Base:
        """The base of library `entry`, with the entry's adapter loaded at its current version."""
        base = self.get(entry.base)
        key = (entry.base, entry.slot)  # two visitors' adapters of one name have slots of their own
        with self._lock:
            if self._served.get(key) != entry.version:
                if entry.slot in list_adapters(base.model):
                    remove_adapter(base.model, entry.slot)
                load_adapter(base.model, entry.path, name=entry.slot)
                self._served[key] = entry.version
        return base

    def classify(
        self, entries: list[Entry], texts: list[str], place: Callable[[Base], Base] = lambda base: base
    ) -> list[Prediction]:
        """`texts[i]` through classification adapter `entries[i]`: rows whose adapters share a base run as
        one mixed-adapter batch. `place` puts a served base where it computes (a GPU lent to a worker)."""
        out: list = [None] * len(texts)
        groups: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            groups.setdefault(entry.base, []).append(i)
        for rows in groups.values():
            for entry in {entries[i].slot: entries[i] for i in rows}.values():
                base = self.serve(entry)
            base = place(base)
            slots = [entries[i].slot for i in rows]
            for i, prediction in zip(
                rows, classify(base.model, base.tokenizer, [texts[i] for i in rows], slots), strict=True
            ):
                out[i] = prediction
        return out

    def names(self) -> list[str]:
        return list(self._bases)

    def resident(self) -> list[Base]:
        return list(self._bases.values())

    def _evict(self, keep: str) -> None:
        # A request still holding an evicted base finishes on it; the next one loads it again.
        while len(self._bases) > 1 and sum(map(model_bytes, self._bases.values())) > self.budget_bytes:
            victim = min((n for n in self._bases if n != keep), key=lambda n: self._last_used.get(n, 0.0))
            del self._bases[victim]
            self._served = {k: v for k, v in self._served.items() if k[0] != victim}
            self.on_evict(victim)
