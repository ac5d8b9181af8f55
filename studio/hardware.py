"""Where the studio's work runs, said honestly: this machine's CPU or GPU, or a Hugging Face Space's.

On a Space (`SPACE_ID` or `SYSTEM=spaces` set) there are three cases:

- CPU hardware (CPU basic, the free tier): everything runs on the CPU.
- a dedicated GPU tier: training and serving run on that GPU.
- ZeroGPU (`SPACES_ZERO_GPU=true`): the GPU is lent only inside short `@spaces.GPU` requests, each
  charged to the quota of the visitor whose request it is. Training runs in slices, each one such
  request of the run's own visitor (studio/zerogpu.py); classify, chat and compare run inside one too.

`gpu` is `spaces.GPU` on ZeroGPU and the identity everywhere else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("adapter_studio")


def on_space() -> bool:
    """Running on Hugging Face Spaces."""
    return bool(os.environ.get("SPACE_ID")) or os.environ.get("SYSTEM", "").strip().lower() == "spaces"


def on_zero_gpu() -> bool:
    """A ZeroGPU Space, by the variable Spaces sets (as `gradio.utils.is_zero_gpu_space` checks)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("true", "1")


ON_ZERO_GPU = on_zero_gpu()

if ON_ZERO_GPU:  # pragma: no cover - only on a ZeroGPU Space; `spaces` goes before torch there
    try:
        import spaces

        gpu: Callable = spaces.GPU
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the `spaces` package is missing; GPU requests run on the CPU")
        ON_ZERO_GPU = False


def _no_cuda_in_the_main_process() -> None:
    """Keep the Space's main process from starting the CUDA driver: once it has, CUDA fails in every worker
    forked after it ("CUDA error: initialization error"). `spaces` patches torch there so that CUDA seems
    present (models moved to "cuda" at startup are packed for the workers; this studio moves none: each
    worker loads its own bases), yet two calls reach the real driver below its patches (tests/
    fake_cuda_driver.py shows both): accelerate, told CUDA is there, saves each checkpoint's CUDA random
    states; and transformers asks at every forward pass, on the CPU too, whether a CUDA stream is
    capturing a graph. Here the main process has no CUDA and no stream, so both are answered as such.
    A forked worker gets the real answers: `spaces` restores the first, the process id tells the second."""
    import torch

    main, capturing = os.getpid(), torch.cuda.is_current_stream_capturing
    torch.cuda.is_available = lambda: False
    torch.cuda.is_current_stream_capturing = lambda: False if os.getpid() == main else capturing()


if ON_ZERO_GPU:
    _no_cuda_in_the_main_process()

if not ON_ZERO_GPU:

    def gpu(fn: Callable | None = None, **_kwargs) -> Callable:
        return fn if fn is not None else (lambda f: f)


import torch  # noqa: E402  (after `spaces`, which must patch it first on ZeroGPU)

from adapter_core.engine import SLICE_SECONDS, SLICED_DEVICE  # noqa: E402


@dataclass(frozen=True)
class Hardware:
    kind: str  # local-gpu | local-cpu | space-cpu | space-gpu | zero-gpu
    training_device: str
    serving_device: str
    notice: str  # markdown for the top of the page, or ""

    @property
    def trains_on_cpu(self) -> bool:
        return self.kind in ("local-cpu", "space-cpu")


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n != 1 else ''}"


def _cpu_name() -> str:
    return f"CPU ({_threads()})"


def _gpu_name() -> str:
    props = torch.cuda.get_device_properties(0)
    return f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB"


def _space_cpu_tier() -> str:
    cores = os.environ.get("CPU_CORES", "").strip()  # Spaces states the hardware's vCPU count
    return {"": "CPU basic", "2": "CPU basic", "8": "CPU upgrade"}.get(cores, f"{cores} vCPU")


def hardware() -> Hardware:
    """What trains and what serves here, and what the page should tell visitors about it."""
    if on_zero_gpu():
        return Hardware(
            "zero-gpu",
            training_device="ZeroGPU, in slices",
            serving_device="ZeroGPU (a GPU lent for each request)",
            notice=(
                "> **Training runs on ZeroGPU, in slices.** This Space's GPU is lent only inside short requests, "
                "each charged to the daily GPU quota of the visitor who makes it (a few minutes a day without a "
                "Hugging Face sign-in, more with one). So a run trains in slices of up to "
                f"{SLICE_SECONDS:.0f} s of steps, each leased by your open page (or by your API client while it "
                "polls the run's status), and keeps a checkpoint after each. Close the page and the run pauses; "
                "run out of quota and it pauses with the reason; Past runs → Resume goes on. Classify, chat, "
                "route and compare run in GPU requests too. To train without a quota, duplicate the Space with a "
                "dedicated GPU."
            ),
        )
    cuda = torch.cuda.is_available()
    if on_space():
        if cuda:
            name = _gpu_name()
            return Hardware("space-gpu", name, name, f"> Training and inference run on this Space's {name}.")
        cpu, tier = _cpu_name(), _space_cpu_tier()
        return Hardware(
            "space-cpu",
            training_device=cpu,
            serving_device=cpu,
            notice=(
                f"> **Training runs on this Space's CPU** ({tier}, {_threads()}): MiniLM "
                "adapters take a minute or two; SmolLM2 instruction runs take several minutes. Duplicate the Space "
                "with a GPU hardware tier to train on a GPU."
            ),
        )
    if cuda:
        name = _gpu_name()
        return Hardware("local-gpu", name, name, "")
    if torch.backends.mps.is_available():
        return Hardware("local-gpu", "Apple GPU (MPS)", "Apple GPU (MPS)", "")
    cpu = _cpu_name()
    return Hardware(
        "local-cpu",
        training_device=cpu,
        serving_device=cpu,
        notice=(
            f"> **Running on CPU** ({_threads()}): MiniLM adapters train in a minute or two; SmolLM2 instruction runs take "
            "a few minutes. A GPU is much faster."
        ),
    )


def device_label(device: str) -> str:
    """A training device as the engine names it ("cpu", "mps", a GPU's name), in the page's words."""
    if device == SLICED_DEVICE:
        return "ZeroGPU, in slices leased by your requests"
    if device == "cpu":
        return _cpu_name()
    if device.startswith("mps"):
        return "Apple GPU (MPS)"
    return device if device.startswith("GPU") else f"GPU: {device}"


def device_summary() -> str:
    """The device training runs on, in a few words."""
    hw = hardware()
    if hw.kind == "zero-gpu":
        return "ZeroGPU: training in slices, classify and chat in GPU requests"
    return hw.training_device


def on_cpu() -> bool:
    """Training runs on the CPU (not on ZeroGPU: its runs train in GPU slices)."""
    return hardware().trains_on_cpu
