"""A slice of a training run: a few optimizer steps, and the evaluation that may end them, computed from
what the call is given and nothing else.

On ZeroGPU the GPU exists only inside short `@spaces.GPU` calls, each in a forked worker process that
never sees the parent's memory as it changes: arguments go in and results come out as pickles. So a
slice takes the run's whole trainable state (the adapter and head weights, the optimizer, the schedule,
the RNG) and the batches of token ids to train on, and gives the new state back. The parent (the
sliced loop) keeps the truth between slices. A bottleneck adapter and its Adam moments are a few MB,
which is what makes this cheap.

The worker keeps the frozen base it loaded (a base never changes), and re-attaches the run's adapter
when its shape differs; the weights always come from the arguments.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from datasets import Dataset
from torch import nn
from transformers import get_linear_schedule_with_warmup

from ..catalog import Base, load_base
from ..inject import adapter_parameters, add_adapter, list_adapters, remove_adapter, train_mode
from .config import TrainConfig
from .metrics import evaluate
from .sample_answers import answer_samples
from .setup import TaskModel, apply_mode, precision_for, run_pooling

Batch = dict[str, torch.Tensor]


@dataclass
class SliceSpec:
    """Everything one slice needs, picklable."""

    config: dict[str, Any]  # the run's resolved TrainConfig, as to_dict
    labels: list[str] | None
    keys: list[str]  # the trainable tensors' keys (adapter_parameters), in the optimizer's order
    weights: dict[str, torch.Tensor]  # every tensor of the adapter and its head, trainable or not
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    warmup: int
    total: int  # the run's planned optimizer steps (the schedule's length)
    rng: torch.Tensor
    steps: list[list[Batch]]  # per optimizer step, its micro-batches
    seconds: float  # take no step that would end after this many seconds of the slice
    stop_file: str | None = None  # a file whose presence ends the slice after the current step
    val: Dataset | None = None  # evaluate after the last step, when all steps were taken
    val_frame: pd.DataFrame | None = None  # instruction runs: the sample prompts' rows
    base_answers: list[str] | None = None
    lease: float = 60.0  # the seconds of GPU this slice asks for (a ZeroGPU lease's duration)


@dataclass
class SliceResult:
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: torch.Tensor
    losses: list[float] = field(default_factory=list)  # per optimizer step taken
    lrs: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training seconds (evaluation excluded)
    eval_seconds: float = 0.0
    metrics: dict[str, float] | None = None
    samples: list[dict[str, str]] | None = None
    base_answers: list[str] | None = None
    stopped: bool = False  # the stop file was seen
    device: str = "cpu"


# This process's bases, by name: loaded once (a frozen base never changes), adapters re-attached per run.
_BASES: dict[str, Base] = {}
_SHAPES: dict[tuple[str, str], Any] = {}  # (base, adapter name) -> the attached adapter's shape


def run_slice(spec: SliceSpec) -> SliceResult:
    """Train `spec.steps` from `spec`'s state (fewer if the time or a stop runs out), evaluate when all were
    taken and `spec.val` is given, and return the new state."""
    config = TrainConfig.from_dict(spec.config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _model(config, spec.labels, device)
    params = _load(model, config.name, spec)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # The schedule first: building it sets the rate of its step 0, which the optimizer's state then replaces.
    scheduler = get_linear_schedule_with_warmup(optimizer, spec.warmup, spec.total)
    optimizer.load_state_dict(spec.optimizer)
    scheduler.load_state_dict(spec.scheduler)
    torch.set_rng_state(spec.rng)
    result = _train(model, config, params, optimizer, scheduler, spec, device)
    if spec.val is not None and len(result.losses) == len(spec.steps) and not result.stopped:
        began = time.perf_counter()
        _evaluate(model, config, spec, result)
        result.eval_seconds = time.perf_counter() - began
    result.weights = {k: v.detach().to("cpu").clone() for k, v in adapter_parameters(model, config.name).items()}
    result.optimizer = _to_cpu(optimizer.state_dict())
    result.scheduler = scheduler.state_dict()
    result.rng = torch.get_rng_state()
    return result


def _model(config: TrainConfig, labels: list[str] | None, device: torch.device) -> nn.Module:
    """This process's copy of the base with adapter `config.name` in the run's shape on it."""
    base = _BASES.get(config.base)
    if base is None:
        base = _BASES[config.base] = load_base(config.base)
    pooling = run_pooling(config, base.model)
    model, shape = base.model, (config.adapter, config.task, tuple(labels or ()), pooling)
    if config.name in list_adapters(model) and _SHAPES.get((config.base, config.name)) != shape:
        remove_adapter(model, config.name)
    if config.name not in list_adapters(model):
        add_adapter(model, config.name, config.adapter, task=config.task, labels=labels, pooling=pooling)
        _SHAPES[(config.base, config.name)] = shape
    apply_mode(model, config)
    return model.to(device)


def _load(model: nn.Module, name: str, spec: SliceSpec) -> list[nn.Parameter]:
    """The spec's weights into the adapter; its trainable tensors, in the optimizer's order."""
    own = adapter_parameters(model, name)
    with torch.no_grad():
        for key, value in spec.weights.items():
            own[key].copy_(value)
    return [own[key] for key in spec.keys]


def _train(model, config: TrainConfig, params, optimizer, scheduler, spec: SliceSpec, device) -> SliceResult:
    """The optimizer steps, as the loop's `train_step` takes them under accelerate: each micro-batch's loss
    divided by grad_accum, gradients clipped, one optimizer and one schedule step per optimizer step."""
    task_model = TaskModel(model, config.name, config.task)
    train_mode(model, config.base_dropout or config.mode == "full")
    autocast = _autocast(config, device)
    result = SliceResult(weights={}, optimizer={}, scheduler={}, rng=spec.rng, device=str(device))
    start, per_step = time.perf_counter(), 0.0
    for micro in spec.steps:
        elapsed = time.perf_counter() - start
        if result.losses and elapsed + per_step > spec.seconds:
            break  # the next step would run past the slice's time: the parent sends it again
        losses = []
        for batch in micro:
            with autocast:
                loss = task_model(**{k: v.to(device) for k, v in batch.items()})
            (loss / config.grad_accum).backward()
            losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        result.losses.append(sum(losses) / len(losses))
        result.lrs.append(scheduler.get_last_lr()[0])
        per_step = (time.perf_counter() - start) / len(result.losses)
        if spec.stop_file and os.path.exists(spec.stop_file):
            result.stopped = True
            break
    result.seconds = time.perf_counter() - start
    return result


def _autocast(config: TrainConfig, device: torch.device):
    """The run's mixed precision on a GPU (auto: bf16 where supported, else fp16), as accelerate sets it
    for an unsliced run; none on the CPU."""
    precision = precision_for(config.precision)
    if device.type != "cuda" or precision == "no":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _evaluate(model, config: TrainConfig, spec: SliceSpec, result: SliceResult) -> None:
    pad_id = _BASES[config.base].tokenizer.pad_token_id
    result.metrics = evaluate(model, config.name, config.task, spec.val, pad_id, num_labels=len(spec.labels or []))
    if config.task == "instruction" and config.sample_prompts and spec.val_frame is not None:
        tokenizer = _BASES[config.base].tokenizer
        result.samples, result.base_answers = answer_samples(
            model, tokenizer, config.name, spec.val_frame, config.sample_prompts, spec.base_answers
        )


def _to_cpu(value: Any) -> Any:
    """An optimizer state with its tensors on the CPU (so the parent, which has no GPU, can unpickle it)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
