"""Inference inside ZeroGPU leases, from what the call is given: library entries (folders on disk, at a
version) and texts. The visitor's checks and counts stay in the parent, where they last; the forked worker
loads each adapter from its folder into a pool of its own, and reloads it when the entry's version moved,
so an adapter trained, uploaded, renamed or deleted after the worker started is seen as it is now.
"""

from __future__ import annotations

import os

from adapter_core import Entry, Prediction, classify
from adapter_core.serve import ModelPool

from .hardware import gpu

CALL_SECONDS = 30  # the lease a short inference call asks for (a fresh worker loads its base first)

_POOL: tuple[int, ModelPool] | None = None  # (the process it belongs to, its pool)


def worker_pool() -> ModelPool:
    """This process's own pool: a forked worker starts a new one rather than trust the parent's copy."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ModelPool())
    return _POOL[1]


def _classify(entries: list[Entry], texts: list[str]) -> list[Prediction]:
    """`texts[i]` through `entries[i]`; rows whose adapters share a base run as one mixed batch."""
    pool, out = worker_pool(), [None] * len(texts)
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        groups.setdefault(entry.base, []).append(i)
    for rows in groups.values():
        base = None
        for i in rows:
            base = pool.serve(entries[i])
        predictions = classify(base.model, base.tokenizer, [texts[i] for i in rows], [entries[i].slot for i in rows])
        for i, prediction in zip(rows, predictions, strict=True):
            out[i] = prediction
    return out


classify_on_gpu = gpu(duration=CALL_SECONDS)(_classify)
