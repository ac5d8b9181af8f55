"""Will a run fit, and how long will a step take? Checked before training starts, on the loaded base.

Memory is a closed form, not a trial: the base's weights as loaded; the trainable parameters' weights,
gradients and AdamW state (16 bytes a parameter in float32; 12 for a fully fine-tuned base, whose
weights are already counted); and the activations that backward keeps, per layer

    batch x length x hidden x layers x ACTIVATION_FACTOR x bytes per value

at the longest batch (dynamic padding: the longest example, at most max length). ACTIVATION_FACTOR is
measured, not derived: the rise of the process's peak memory (VmHWM, glibc made to return freed
blocks) over one training step above the loaded model, on the project's CPU, adapter r=64, base in
eval mode, was linear in batch x length and came to 13.5 values per hidden unit per layer for MiniLM
(6 layers, hidden 384; 0.12 MiB a token at batch 8-64 and length 64-512) and 15.3-16.0 for SmolLM2
(30 layers, hidden 576; 1.06 MiB a token for classification, 1.11 for instruction); 16 covers both. No
length-squared attention term showed up to length 512 (SDPA keeps no attention matrix). The base's own
dropout, when on, adds its masks: x1.45 on MiniLM; full fine-tuning keeps the inputs of every linear
layer for the weights' gradients: x1.4 (MiniLM and SmolLM2 alike); training the head alone keeps none,
so only one layer's worth is alive at a time. Under bf16/fp16 autocast (a GPU) values are taken as 2
bytes, an assumption: no GPU was lent to measure it. Instruction runs add one chunk of the LM head's
logits (`lm_head_loss`). The figure is an estimate to warn before a run fails, not a promise.

Time is measured: `calibrate_time` runs a few real forward and backward passes on a typical batch.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from ..inject import count_adapter_params
from .batches import collate
from .lm_head_loss import CHUNK_ELEMENTS
from .losses import task_loss

ACTIVATION_FACTOR = 16  # values kept per hidden unit, per layer and token, for backward (measured above)
DROPOUT_FACTOR = 1.5  # the base's dropout on (base_dropout, or full fine-tuning): its masks too
FULL_FACTOR = 1.45  # full fine-tuning: the inputs of every linear layer, for the weights' gradients
STATE_BYTES = 16  # a new trainable float32 parameter: weight, gradient, AdamW's two moments
MARGIN = 1.1  # warn when the estimate comes within 10% of what is free


def estimate_memory(
    model: nn.Module, config: Any, num_labels: int, length: int | None = None, half: bool | None = None
) -> dict[str, Any]:
    """Bytes a training run of `config` (a `TrainConfig` with its batch size resolved) needs on `model`,
    the loaded base: `weights` (the model as loaded), `trainable_state` (weights, gradients and AdamW
    state of what trains), `activations` (kept for backward at the longest batch), `total`; with the
    inputs (`batch_size`, `length`, `trainable`). `length` is the longest tokenized example (default:
    max length); `half` whether activations are bf16/fp16 (default: on a GPU, unless precision "no")."""
    cfg = model.config
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    batch = config.batch_size or 32
    length = min(length or config.max_length, config.max_length)
    if half is None:
        half = config.precision in ("bf16", "fp16") or (
            config.precision == "auto" and config.device != "cpu" and torch.cuda.is_available()
        )
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    head = hidden * num_labels + num_labels if config.task == "classification" else 0
    if config.mode == "full":
        base = sum(p.numel() for p in model.parameters())
        trainable, state = base + head, (STATE_BYTES - 4) * base + STATE_BYTES * head
    else:
        trainable = head if config.mode == "head" else count_adapter_params(model, config.adapter, num_labels)
        state = STATE_BYTES * trainable
    factor = ACTIVATION_FACTOR * (layers if config.mode != "head" else 1)
    if config.mode == "full":
        factor *= FULL_FACTOR
    if (config.base_dropout or config.mode == "full") and has_dropout(model):
        factor *= DROPOUT_FACTOR
    activations = int(batch * length * hidden * factor * (2 if half else 4))
    if config.task == "instruction":  # one chunk of LM-head logits and their float32 copy
        vocab = model.get_output_embeddings().weight.shape[0]
        activations += 2 * 4 * min(CHUNK_ELEMENTS, batch * length * vocab)
    return {
        "weights": weights,
        "trainable_state": state,
        "activations": activations,
        "total": weights + state + activations,
        "batch_size": batch,
        "length": length,
        "trainable": trainable,
    }


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


def free_bytes(device: str | torch.device) -> int:
    """Memory free for this run: `torch.cuda.mem_get_info` on a GPU, available RAM on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def check_fit(
    estimate: dict[str, Any], device: str | torch.device, free: int | None = None, weights_loaded: bool = True
) -> str | None:
    """A warning in words when the run will likely not fit in what is free on `device` (`free`, in
    bytes, is measured when not given), else None. With `weights_loaded`, the base already sits on the
    device, so its weights are part of what is in use, not of what is still needed."""
    free = free_bytes(device) if free is None else free
    needed = estimate["total"] - (estimate["weights"] if weights_loaded else 0)
    if needed * MARGIN <= free:
        return None
    where = "GPU" if torch.device(device).type == "cuda" else "machine"
    return (
        f"This run needs about {gib(needed)} more memory (activations {gib(estimate['activations'])} at batch "
        f"{estimate['batch_size']} x {estimate['length']} tokens, trainable state "
        f"{gib(estimate['trainable_state'])}) but only {gib(free)} is free on this {where}; it may run out. "
        "Lower the batch size or the max length (raise grad_accum to keep the effective batch)."
    )


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def typical_batch(ds: Dataset, batch_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A padded batch of the `batch_size` examples closest to the mean length: what a step of
    length-grouped batches costs on average."""
    lengths = np.asarray(ds["length"])
    rows = np.argsort(np.abs(lengths - lengths.mean()), kind="stable")[:batch_size]
    return collate([ds[int(i)] for i in rows], pad_id)


def calibrate_time(
    model: nn.Module, name: str, task: str, batch: dict[str, torch.Tensor], steps: int = 3, grad_accum: int = 1
) -> float:
    """Seconds per optimizer step, measured: one warm-up and `steps` timed forward and backward passes
    of adapter `name` on `batch` (see `typical_batch`), times `grad_accum`. Call it with the model in
    the mode it trains in. The weights do not change (no optimizer step; the gradients are cleared
    after) and the random state is put back, so a run with a calibration trains as one without. Under
    mixed precision, call it inside the accelerator's `autocast()`, as training steps run."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    rng = torch.get_rng_state(), (torch.cuda.get_rng_state_all() if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params]  # set aside: backward would add to them in place
    for p in params:
        p.grad = None
    step = partial(_forward_backward, model, name, task, batch)
    try:
        step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        seconds = (time.perf_counter() - start) / steps
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])
    return seconds * grad_accum


def _forward_backward(model: nn.Module, name: str, task: str, batch: dict[str, torch.Tensor]) -> None:
    loss = task_loss(model, name, task, batch)[0]
    loss.backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
