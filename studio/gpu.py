"""ZeroGPU support: on Hugging Face Spaces with the `spaces` package, GPU work runs inside
`@spaces.GPU`; everywhere else the decorator is the identity and nothing changes."""

from __future__ import annotations

from collections.abc import Callable

import torch

try:  # pragma: no cover - only on Spaces
    import spaces

    gpu: Callable = spaces.GPU
    ON_ZERO_GPU = True
except ImportError:

    def gpu(fn: Callable | None = None, **_kwargs) -> Callable:
        return fn if fn is not None else (lambda f: f)

    ON_ZERO_GPU = False


def device_summary() -> str:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    if torch.backends.mps.is_available():
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def on_cpu() -> bool:
    return not (torch.cuda.is_available() or torch.backends.mps.is_available() or ON_ZERO_GPU)
