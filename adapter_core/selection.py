"""Which adapter a forward pass uses, chosen per thread and per task.

The choice lives in a `ContextVar`, never in a flag on the model, so two requests served at the same
moment by two threads each see their own adapter. A worker thread (for example one that runs
`generate` behind a streamer) starts with an empty context: start it with `thread_with_context`.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from .errors import AdapterError
from .state import get_state


class MixedSelection:
    """One adapter name (or None) per example of a batch, grouped so each adapter runs once."""

    def __init__(self, names: Sequence[str | None]):
        self.names = tuple(names)
        self._groups: dict[torch.device, dict[str, torch.Tensor]] = {}
        # Per slot: its adapters' weights stacked for the batched kernel (built once per selection, so
        # once per `generate` call rather than once per token).
        self.stacks: dict[int, Any] = {}

    def groups(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Adapter name -> the batch rows that use it, as an index tensor on `device`."""
        if device not in self._groups:
            rows: dict[str, list[int]] = {}
            for i, name in enumerate(self.names):
                if name is not None:
                    rows.setdefault(name, []).append(i)
            self._groups[device] = {n: torch.tensor(r, dtype=torch.long, device=device) for n, r in rows.items()}
        return self._groups[device]


Selection = str | MixedSelection | None

# Model key -> selection. Immutable mappings, so a child context never mutates its parent's view.
_SELECTION: contextvars.ContextVar[MappingProxyType] = contextvars.ContextVar(
    "adapter_core_selection", default=MappingProxyType({})
)


def current_selection(model_key: int) -> Selection:
    """The selection for the model with `model_key` in the calling context (None: the base model)."""
    return _SELECTION.get().get(model_key)


@contextmanager
def use_adapter(model: nn.Module, name: str | Sequence[str | None] | None) -> Iterator[None]:
    """Select the adapter for calls on `model` made inside this block, in this thread or task only.

    `name` is an adapter name, None for the pure base model, or a list with one name (or None) per
    example of the batch, which runs every adapter of the batch in one forward pass.
    """
    state = get_state(model)
    if name is None:
        selection: Selection = None
    elif isinstance(name, str):
        _check_known(state, name)
        selection = name
    else:
        names = list(name)
        distinct = set(names)
        for n in distinct - {None}:
            _check_known(state, n)
        # A batch that names one adapter throughout takes the plain path: no gather and scatter.
        selection = names[0] if len(distinct) == 1 else MixedSelection(names)
    key = state.key if state is not None else id(model)
    mapping = dict(_SELECTION.get())
    mapping[key] = selection
    token = _SELECTION.set(MappingProxyType(mapping))
    try:
        yield
    finally:
        _SELECTION.reset(token)


def _check_known(state: Any, name: str) -> None:
    known = sorted(state.records) if state is not None else []
    if name not in known:
        raise AdapterError(
            f"No adapter named {name!r} on this model. Loaded adapters: {known or 'none'}. "
            "Add one with add_adapter or load_adapter, or pass None for the base model."
        )


def thread_with_context(target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
    """A thread that runs `target` with a copy of the caller's context, adapter selection included."""
    ctx = contextvars.copy_context()
    return threading.Thread(target=ctx.run, args=(target, *args), kwargs=kwargs, daemon=True)
