"""The bottleneck adapter, and the slot that wraps a frozen output projection with named adapters."""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

from .config import AdapterConfig
from .selection import MixedSelection, current_selection

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU, "tanh": nn.Tanh}
# Mixed batches with at most this many tokens per row (decoding steps, short prompts) run every adapter
# in one batched kernel; longer rows run each adapter once on its own rows, where the kernels are big.
BATCHED_MAX_TOKENS = 16


class BottleneckAdapter(nn.Module):
    """`scaling * W_up(f(W_down h))`: the residual branch only; the slot adds it to `h`."""

    def __init__(self, hidden_size: int, bottleneck: int, config: AdapterConfig):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = _ACTIVATIONS[config.activation]()
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.up = nn.Linear(bottleneck, hidden_size)
        self.scaling = float(config.scaling)
        self.reset_parameters(config.init)

    @torch.no_grad()
    def reset_parameters(self, init: str) -> None:
        if init == "houlsby":
            # The seed paper: both projections near zero, so the adapter starts near the identity.
            nn.init.trunc_normal_(self.down.weight, std=1e-2, a=-2e-2, b=2e-2)
            nn.init.trunc_normal_(self.up.weight, std=1e-2, a=-2e-2, b=2e-2)
        else:
            if init == "kaiming":
                nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            elif init == "xavier":
                nn.init.xavier_uniform_(self.down.weight)
            else:
                nn.init.normal_(self.down.weight, std=0.02)
            # W_up at zero makes the adapter exactly the identity at step 0.
            nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.up(self.dropout(self.act(self.down(h))))
        return out if self.scaling == 1.0 else out * self.scaling


class AdapterSlot(nn.Module):
    """Wraps a sub-layer's output projection: `y = base(x)`, then `y + adapter(y)` for the selected adapter.

    A serial (Houlsby, Pfeiffer) adapter reads the projection's output; a parallel adapter reads the
    sub-layer's input, which a pre-hook on the sub-layer leaves in `stash` (thread-local, since two
    threads may run the same layer at once). Adapters absent from this slot (left-out layers, or
    the attention slot of a Pfeiffer adapter) leave the output untouched.
    """

    def __init__(self, base: nn.Module, model_key: int):
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict()
        self.parallel: set[str] = set()
        self.model_key = model_key
        self.stash = threading.local()

    def __getattr__(self, name: str):
        # Model code sometimes reads the projection's own attributes (T5 checks `wo.weight.dtype`).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["base"], name)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        y = self.base(x, *args, **kwargs)
        selection = current_selection(self.model_key)
        if selection is None:
            return y
        if isinstance(selection, MixedSelection):
            return self._mixed(y, selection)
        adapter = self.adapters._modules.get(selection)
        if adapter is None:
            return y
        return y + self._delta(selection, adapter, self._source(selection, y))

    def _source(self, name: str, y: torch.Tensor) -> torch.Tensor:
        if name not in self.parallel:
            return y
        src = self.stash.value
        if src.shape[-1] != y.shape[-1]:
            raise ValueError(
                f"Parallel adapter {name!r} reads the sub-layer input, which here has width {src.shape[-1]} "
                f"instead of the hidden size {y.shape[-1]}. Use placement 'houlsby' or 'pfeiffer', or give "
                "target_modules with 'attn_input'/'ffn_input' naming the sub-layer modules."
            )
        return src

    @staticmethod
    def _delta(name: str, adapter: nn.Module, src: torch.Tensor) -> torch.Tensor:
        dtype = adapter.down.weight.dtype
        if src.dtype == dtype:
            return adapter(src)
        return adapter(src.to(dtype)).to(src.dtype)

    def _mixed(self, y: torch.Tensor, selection: MixedSelection) -> torch.Tensor:
        if y.shape[0] != len(selection.names):
            raise ValueError(f"The adapter list has {len(selection.names)} names but the batch has {y.shape[0]} rows.")
        if y.dim() == 3 and y.shape[1] <= BATCHED_MAX_TOKENS and not torch.is_grad_enabled():
            key = id(self)
            if key not in selection.stacks:
                selection.stacks[key] = self._stack(selection.names, y)
            stack = selection.stacks[key]
            if stack is not None:
                return self._batched(y, stack)
        out = y
        for name, rows in selection.groups(y.device).items():
            adapter = self.adapters._modules.get(name)
            if adapter is not None:
                src = self._source(name, y).index_select(0, rows)
                out = out.index_add(0, rows, self._delta(name, adapter, src).to(y.dtype))
        return out

    def _stack(self, names: tuple[str | None, ...], y: torch.Tensor) -> tuple | None:
        """The selection's adapters stacked as (A, ...) tensors, with the batch's rows grouped by adapter
        (padded to the largest group by repeating one of its rows). None when one kernel cannot serve
        them all (different sizes, activations, dtypes or placements, or dropout active)."""
        present = {n: self.adapters._modules.get(n) for n in dict.fromkeys(names) if n is not None}
        present = {n: a for n, a in present.items() if a is not None}
        kinds = {
            (a.down.weight.shape, type(a.act), a.down.weight.dtype, n in self.parallel, a.training)
            for n, a in present.items()
        }
        if len(kinds) != 1:
            return None
        *_, dtype, parallel, training = kinds.pop()
        if training or dtype != y.dtype:
            return None
        adapters = list(present.values())
        down = torch.stack([a.down.weight.t() for a in adapters])
        down_b = torch.stack([a.down.bias for a in adapters]).unsqueeze(1)
        up = torch.stack([a.up.weight.t() * a.scaling for a in adapters])
        up_b = torch.stack([a.up.bias * a.scaling for a in adapters]).unsqueeze(1)
        groups = [[i for i, n in enumerate(names) if n == name] for name in present]
        width = max(map(len, groups))
        gather = [g[j] if j < len(g) else g[0] for g in groups for j in range(width)]
        kept = [k * width + j for k, g in enumerate(groups) for j in range(len(g))]
        device = y.device
        targets = torch.tensor([g[j] for g in groups for j in range(len(g))], device=device)
        kept_rows = None if len(kept) == len(gather) else torch.tensor(kept, device=device)
        source = next(iter(present)) if parallel else None
        return down, down_b, up, up_b, adapters[0].act, torch.tensor(gather, device=device), kept_rows, targets, source

    def _batched(self, y: torch.Tensor, stack: tuple) -> torch.Tensor:
        """Every adapter once, on its own rows, in two batched matmuls over the stacked adapters: each
        adapter's weights are read once per step and never copied, however the rows share them. For a
        few tokens per row (decoding) this replaces a handful of tiny kernels per adapter with one set."""
        down, down_b, up, up_b, act, gather, kept, targets, source = stack
        src = y if source is None else self._source(source, y)
        tokens, hidden = src.shape[1], src.shape[2]
        grouped = src.index_select(0, gather).view(down.shape[0], -1, hidden)
        h = act(torch.baddbmm(down_b, grouped, down))
        delta = torch.baddbmm(up_b, h, up).view(-1, tokens, hidden)
        if kept is not None:
            delta = delta.index_select(0, kept)
        return y.index_add(0, targets, delta)
