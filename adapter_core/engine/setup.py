"""A run's setup phase: data, base, tokenization, plan, adapter, optimizer, scheduler and trackers, gathered
in one `Recipe` that the loop and the finish phase read (as a torchtune recipe's `setup`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from ..atomic import write_json_atomic
from ..catalog import Base, load_base
from ..config import AdapterConfig
from ..errors import AdapterError
from ..heads import default_pooling
from ..inject import HEADS_ATTR, adapter_parameters, add_adapter, remove_adapter, set_trainable, train_mode
from ..io import load_adapter
from ..placement import model_family
from . import checkpoint
from .batches import LengthGroupedBatches, collate
from .config import Event, TrainConfig
from .inputs import init_source, read_data, tokenize_splits
from .losses import task_loss
from .memory_fit import calibrate_time, check_fit, estimate_memory, typical_batch
from .plan import Plan
from .run_time import CALIBRATE_OVER_STEPS, RunShape, eval_every, shape_of
from .tracking import accelerator_options, start_tracking


@dataclass
class Recipe:
    """Everything the loop and the finish phase need, built once by `setup`."""

    config: TrainConfig  # resolved: the plan's batch size, epochs and rate; an init_from adapter's own shape
    out_dir: Path
    accelerator: Accelerator
    emit: Callable[[Event], None]
    base: Base
    shared: bool  # the caller's base: the adapter comes off it again at the end
    labels: list[str] | None
    train_ds: Dataset
    val_ds: Dataset
    val_frame: pd.DataFrame  # the validation rows: texts for the report, prompts for the samples
    plan: Plan
    params: list[nn.Parameter]
    task_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: DataLoader
    sampler: LengthGroupedBatches
    steps_per_epoch: int
    total: int
    eval_every: int
    trainable: int
    memory: dict[str, Any]  # fit.estimate_memory's figures for this run
    seconds_per_step: float | None  # measured before training (None: a run too short to be worth it)
    shape: RunShape  # what the run does, for its time left
    warnings: list[str] = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def model(self) -> nn.Module:
        """The HF model with the adapter, outside any DDP wrapper (for evaluation and saving)."""
        return self.accelerator.unwrap_model(self.task_model).model


class TaskModel(nn.Module):
    """The trainable forward: HF model + adapter `name`, returning the task loss (what DDP wraps)."""

    def __init__(self, model: nn.Module, name: str, task: str):
        super().__init__()
        self.model, self.name, self.task = model, name, task

    def forward(self, input_ids, attention_mask, labels):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        return task_loss(self.model, self.name, self.task, batch)[0]


def multi_cpu() -> bool:
    """Launched as several processes (torchrun, accelerate launch) on a machine without a GPU: accelerate
    then needs `cpu=True` to form a gloo process group instead of running each rank alone."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def precision_for(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def setup(
    config: TrainConfig, out_dir: Path, on_event: Callable[[Event], None], base: Base | None, sliced: bool = False
) -> Recipe:
    """Read the data, load (or reuse) the base, plan the run and build what trains. With a shared `base`,
    a failure after the adapter is added takes it off again. A `sliced` run takes no step here, not even
    the timing passes: its slices run elsewhere and time themselves (`cpu_slices` says why)."""
    config.check()
    if base is not None and config.mode == "full":
        raise AdapterError("A full fine-tune changes the base itself; it cannot train on a shared, loaded base.")
    on_cpu = config.device == "cpu"
    accelerator = Accelerator(
        mixed_precision="no" if on_cpu else precision_for(config.precision),
        gradient_accumulation_steps=config.grad_accum,
        cpu=multi_cpu() or on_cpu,
        **accelerator_options(config.report_to, out_dir),
    )
    emit = on_event if accelerator.is_main_process else (lambda e: None)
    set_seed(config.seed)
    emit(Event("status", status="loading", message=f"Loading {config.base} and {Path(config.data).name}"))
    data, train_df, val_df = read_data(config)
    if data.summary.source:  # a Hub dataset at the commit read: what a resume reads again, whatever `main` is then
        config = replace(config, data=data.summary.source)
    shared = base is not None
    if base is None:
        with accelerator.main_process_first():  # one process converts and caches a GGUF base
            base = load_base(config.base)
    start = init_source(config, data)
    labels = start["labels"] if start else data.labels
    train_ds, val_ds = tokenize_splits(config, data, train_df, val_df, base.tokenizer, labels, emit)
    plan = plan_run(config, len(train_ds), train_ds["length"], base, accelerator, sliced)
    config = replace(config, batch_size=plan.batch_size, epochs=plan.epochs, lr=plan.lr)  # the caller's stays
    if accelerator.is_main_process:
        record_resolved(out_dir, plan, data.summary.source)
    memory = estimate_memory(base.model, config, len(labels or []), length=max(train_ds["length"]))
    fits = check_fit(memory, accelerator.device, weights_loaded=on_device(base.model, accelerator.device))
    config = attach_adapter(base.model, config, labels, start, emit)
    try:
        r = build(
            config, out_dir, accelerator, emit, base, shared, labels, train_ds, val_ds, val_df, plan, memory, sliced
        )
        r.warnings += [fits] if fits else []
        return r
    except BaseException:
        if shared:
            remove_adapter(base.model, config.name)
        raise


def plan_run(
    config: TrainConfig, rows: int, lengths: list[int], base: Base, accelerator: Accelerator, sliced: bool = False
) -> Plan:
    """The run's plan: the settings given in `config`, and the auto ones chosen for `rows` training rows.
    A `sliced` run is planned for the GPU its slices lease, whatever device this process has: no CPU time
    budget cuts it (the slices that fall back to the CPU stay bounded by the run's own `max_seconds`)."""
    return config.plan(
        rows,
        device="cpu" if accelerator.device.type == "cpu" and not sliced else "cuda",
        tokens_per_example=sum(lengths) / max(len(lengths), 1),
        base_params=base.num_parameters,
        processes=accelerator.num_processes,
    )


def record_resolved(out_dir: Path, plan: Plan, pinned: str | None = None) -> None:
    """Write the resolved batch size, epochs and learning rate into the run's config.json (the CLI and
    the job manager write it before training, with None for each auto setting), noting which were auto;
    and a Hub dataset as `pinned` to the commit read, so that a resume reads the same rows."""
    path = out_dir / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # no run folder around this training (a library call): the adapter's meta has them
    if not isinstance(saved, dict):
        return
    saved.update(batch_size=plan.batch_size, epochs=plan.epochs, lr=plan.lr, auto=list(plan.auto))
    saved.update({"data": pinned} if pinned else {})
    write_json_atomic(path, saved)


def run_pooling(config: TrainConfig, model: nn.Module) -> str:
    """The pooling a run's classifier gets: the one asked for, else the model family's default for what
    the run trains (a head alone on a frozen encoder pools differently: `heads.default_pooling`)."""
    return config.pooling or default_pooling(model_family(model), head_only=config.mode == "head")


def attach_adapter(model: nn.Module, config: TrainConfig, labels, start: dict | None, emit) -> TrainConfig:
    """Add a fresh adapter, or load the `init_from` one under `config.name` (its own shape and head: an
    `adapter` setting that differs is ignored, with a warning), then set what trains by `config.mode`.
    Returns the config with the adapter's shape as trained."""
    if start is None:
        pooling = run_pooling(config, model)
        add_adapter(model, config.name, config.adapter, task=config.task, labels=labels, pooling=pooling)
    else:
        load_adapter(model, start["path"], name=config.name, trainable=True)
        own = replace(config, adapter=AdapterConfig.from_dict(start["config"]), pooling=start.get("pooling"))
        if own.adapter != config.adapter:
            emit(
                Event(
                    "warning",
                    message=f"Continuing {start['label']!r} with its own adapter settings (bottleneck "
                    f"{own.adapter.bottleneck or own.adapter.reduction_factor}, {own.adapter.placement}); "
                    "the adapter settings given for this run are ignored.",
                    info={"when": "start"},
                )
            )
        config = own
    apply_mode(model, config)
    return config


def apply_mode(model: nn.Module, config: TrainConfig) -> None:
    """`adapter` trains this adapter and its head alone (other adapters on a shared base stay frozen);
    `head` the classification head alone (the adapter stays as it is: the identity when new); `full`
    everything, as the baseline that adapters are measured against."""
    if config.mode == "full":
        model.requires_grad_(True)
        return
    set_trainable(model, config.name)
    if config.mode == "head":
        for p in adapter_parameters(model, config.name).values():
            p.requires_grad_(False)
        for p in getattr(model, HEADS_ATTR)[config.name].parameters():
            p.requires_grad_(True)


def mean_length(ds) -> float | None:
    """The mean tokenised length of a split's rows (None for an empty one)."""
    lengths = ds["length"]
    return sum(lengths) / len(lengths) if len(lengths) else None


def on_device(model: nn.Module, device: torch.device) -> bool:
    """Whether `model`'s weights already sit on `device` (a shared base, or any base on a CPU)."""
    here = next(model.parameters()).device
    return here.type == device.type and (here.index or 0) == (device.index or 0)


def measure_step(
    model: nn.Module, config: TrainConfig, train_ds, pad_id: int, accelerator, steps: int, emit
) -> float | None:
    """Seconds per optimizer step from real passes on a typical batch, on the device and in the mode the
    run trains in (before DDP wraps the model). A run of a few steps measures itself: None."""
    if steps <= CALIBRATE_OVER_STEPS:
        return None
    # Seconds on a CPU for a large base: a phase of its own on the chart (`emit` speaks on rank 0 only).
    emit(Event("status", status="loading", message="Timing three training passes here, to estimate the run's length"))
    model.to(accelerator.device)
    train_mode(model, config.base_dropout or config.mode == "full")
    batch = typical_batch(train_ds, config.batch_size, pad_id)
    with accelerator.autocast():
        return calibrate_time(model, config.name, config.task, batch, steps=2, grad_accum=config.grad_accum)


def build(
    config, out_dir, accelerator, emit, base, shared, labels, train_ds, val_ds, val_df, plan, memory, sliced=False
) -> Recipe:
    """The step time measured (unless `sliced`); optimizer, data loader and scheduler, prepared by
    accelerate; trackers started."""
    model = base.model
    params = [p for p in model.parameters() if p.requires_grad]
    sampler = LengthGroupedBatches(train_ds["length"], config.batch_size, config.seed)
    pad_id = base.tokenizer.pad_token_id
    seconds_per_step = (
        None if sliced else measure_step(model, config, train_ds, pad_id, accelerator, plan.total_steps, emit)
    )
    loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=partial(collate, pad_id=pad_id))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    task_model, optimizer, loader = accelerator.prepare(TaskModel(model, config.name, config.task), optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    total = max(1, int(steps_per_epoch * config.epochs + 1e-6))
    if config.max_steps:
        total = min(total, config.max_steps)
    # Stepped by hand once per optimizer step: accelerate's wrapper would step it per process.
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    checkpoint.register(accelerator, scheduler)
    start_tracking(accelerator, config.name, config.to_dict(), out_dir)
    return Recipe(
        config=config,
        out_dir=out_dir,
        accelerator=accelerator,
        emit=emit,
        base=base,
        shared=shared,
        labels=labels,
        train_ds=train_ds,
        val_ds=val_ds,
        val_frame=val_df,
        plan=plan,
        params=params,
        task_model=task_model,
        optimizer=optimizer,
        scheduler=scheduler,
        loader=loader,
        sampler=sampler,
        steps_per_epoch=steps_per_epoch,
        total=total,
        # Twice per epoch, and at most about ten times a run (a small file makes many short epochs).
        eval_every=eval_every(config.eval_every, steps_per_epoch, total),
        trainable=sum(p.numel() for p in params),
        memory=memory,
        seconds_per_step=seconds_per_step,
        shape=shape_of(plan, config, len(val_ds), mean_length(train_ds), total),
        warnings=list(plan.warnings),
    )
