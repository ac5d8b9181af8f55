"""Inference inside ZeroGPU leases, from what the call is given: library entries (folders on disk, at a
version) and texts. The visitor's checks and counts stay in the parent, where they last; the forked worker
loads each adapter from its folder into a pool of its own, and reloads it when the entry's version moved,
so an adapter trained, uploaded, renamed or deleted after the worker started is seen as it is now.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import torch

from adapter_core import Entry, Prediction, RepetitionGuard, stream_generate
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


def _on_gpu(base):
    """The base (with its adapters) on the lent GPU; on the CPU where there is none (the emulation)."""
    if torch.cuda.is_available():
        base.model.to("cuda")
    return base


def _classify(entries: list[Entry], texts: list[str]) -> list[Prediction]:
    """`texts[i]` through `entries[i]`; rows whose adapters share a base run as one mixed batch."""
    return worker_pool().classify(entries, texts, place=_on_gpu)


classify_on_gpu = gpu(duration=CALL_SECONDS)(_classify)


def _chat(entry: Entry | None, base_name: str, message: str, max_new_tokens: int) -> Iterator[str | dict]:
    """The answer of `entry`'s instruction adapter (None: the bare `base_name`), piece by piece; last, a
    dict saying whether the repetition guard cut a loop."""
    pool = worker_pool()
    base = _on_gpu(pool.serve(entry) if entry is not None else pool.get(base_name))
    guard = RepetitionGuard()
    name = entry.slot if entry is not None else None
    yield from stream_generate(base.model, base.tokenizer, message, name, max_new_tokens, guard=guard)
    yield {"repeated": bool(guard.any)}


chat_on_gpu = gpu(duration=CALL_SECONDS)(_chat)


class LeasedStream:
    """A chat answer streamed out of a GPU call. Setting `stop` (the Stop button, in this process) ends it
    after the next piece: closing the call's generator is what reaches the forked worker, which stops."""

    def __init__(self, pieces: Iterator[str | dict], stop: threading.Event | None):
        self._pieces, self._stop, self.repeated = pieces, stop, False

    def __iter__(self) -> Iterator[str]:
        try:
            for piece in self._pieces:
                if isinstance(piece, dict):
                    self.repeated = piece["repeated"]
                    continue
                yield piece
                if self._stop is not None and self._stop.is_set():
                    return
        finally:
            self._pieces.close()
