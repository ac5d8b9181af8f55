"""The training loop: explicit, on `accelerate`, emitting events to a callback.

The same entry point runs on one device or under `accelerate launch` / `torchrun` (DDP): rank 0
alone writes files, every rank trains on its shard of each batch.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import concatenate_datasets
from torch import nn
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from ..atomic import write_json_atomic
from ..catalog import Base, load_base
from ..config import AdapterConfig
from ..errors import AdapterError
from ..inject import HEADS_ATTR, adapter_parameters, add_adapter, train_mode, trainable_summary
from ..io import CONFIG_FILE, save_adapter
from .batches import LengthGroupedBatches, collate, drop_unanswered, tokenize
from .calibration import calibrate_adapter
from .data import DataError, TaskData, describe_lengths, load_data, split
from .losses import task_loss
from .metrics import evaluate, is_better
from .plan import DEFAULT_PRESET, PRESETS, Plan, plan_training, training_warnings


@dataclass
class TrainConfig:
    """Everything one run needs. The defaults reach >91% on BANKING77 with MiniLM in minutes on a CPU.

    `batch_size`, `epochs` and `lr` default to None, "auto": `train` chooses them once the data is
    loaded (`engine/plan.py`: enough optimizer steps for a small file, batch 32 for a large one), by the
    recipe of `preset`. A value given always wins.
    """

    base: str = "minilm"
    data: str = ""
    task: str = "classification"
    name: str = "adapter"
    columns: dict[str, str] = field(default_factory=dict)
    val_data: str | None = None
    val_fraction: float = 0.1
    bottleneck: int = 64
    placement: str = "houlsby"
    activation: str = "gelu"
    dropout: float = 0.0
    base_dropout: bool = False  # False: the frozen base runs in eval mode (True: its dropout on, as in PEFT)
    pooling: str | None = None
    epochs: float | None = None  # None: auto (sized in optimizer steps, see engine/plan.py)
    lr: float | None = None  # None: auto (the task's rate for the preset: 2e-3 classification, 1e-3 instruction)
    batch_size: int | None = None  # None: auto (32, 16 or 8 by the file's size)
    preset: str = DEFAULT_PRESET  # the recipe auto settings follow: Quick look, Balanced or Capacity
    grad_accum: int = 1
    max_length: int = 128
    seed: int = 42
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every: int = 0  # steps between evaluations; 0: twice per epoch, at most about ten times a run
    max_steps: int = 0  # stop after this many steps (0: no limit); for quick tries
    max_seconds: float = 0  # time budget for training, evaluation excluded (0: none)
    mode: str = "adapter"  # adapter | head (head only) | full (full fine-tuning, for comparisons)
    precision: str = "auto"  # auto | no | bf16 | fp16
    device: str = "auto"  # auto (a GPU when there is one) | cpu

    def adapter_config(self) -> AdapterConfig:
        return AdapterConfig(
            bottleneck=self.bottleneck, placement=self.placement, activation=self.activation, dropout=self.dropout
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check(self) -> None:
        """Refuse settings that cannot train, in words; quotas are the caller's business (see studio/policy.py)."""
        for key in ("base", "data", "task", "name", "placement", "activation", "mode", "precision", "preset"):
            if not isinstance(getattr(self, key), str):
                raise AdapterError(f"{key} must be text; got {getattr(self, key)!r}.")
        if self.task not in ("classification", "instruction"):
            raise AdapterError(f"task must be classification or instruction; got {self.task!r}.")
        if self.mode not in ("adapter", "head", "full"):
            raise AdapterError(f"mode must be adapter, head or full; got {self.mode!r}.")
        if self.device not in ("auto", "cpu"):
            raise AdapterError(f"device must be auto or cpu; got {self.device!r}.")
        if self.preset not in PRESETS:
            raise AdapterError(f"preset must be one of {', '.join(PRESETS)}; got {self.preset!r}.")
        if self.precision not in ("auto", "no", "bf16", "fp16"):
            raise AdapterError(f"precision must be auto, no, bf16 or fp16; got {self.precision!r}.")
        if not isinstance(self.columns, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.columns.items()
        ):
            raise AdapterError(f"columns must map roles to column names; got {self.columns!r}.")
        for key in ("batch_size", "grad_accum", "max_length"):
            if key != "batch_size" or self.batch_size is not None:  # None: auto
                _whole(key, getattr(self, key), low=1)
        for key in ("eval_every", "max_steps"):
            _whole(key, getattr(self, key), low=0)
        _whole("seed", self.seed, low=0, high=2**32 - 1)
        for key in ("epochs", "lr", "max_grad_norm"):
            if key != "max_grad_norm" and getattr(self, key) is None:  # auto
                continue
            if not _real(getattr(self, key)) > 0:
                raise AdapterError(f"{key} must be a positive number; got {getattr(self, key)!r}.")
        for key in ("max_seconds", "weight_decay"):
            if not _real(getattr(self, key)) >= 0:
                raise AdapterError(f"{key} must be zero or more; got {getattr(self, key)!r}.")
        for key, low, high in (("warmup_ratio", 0, 1), ("dropout", 0, 1), ("val_fraction", 0, 0.5)):
            value = _real(getattr(self, key))
            if not (low <= value < high if key != "val_fraction" else low < value < high):
                bounds = f"between {low} and {high}" if key == "val_fraction" else f"at least {low} and below {high}"
                raise AdapterError(f"{key} must be {bounds}; got {getattr(self, key)!r}.")
        if self.mode == "head" and self.task != "classification":
            raise AdapterError("mode 'head' trains a classification head; instruction tuning has none.")
        if self.max_length < 8:
            raise AdapterError(f"max_length {self.max_length} is too short to hold a text; use 32 or more.")
        self.adapter_config()  # validates bottleneck, placement, activation


def _whole(key: str, value: Any, low: int, high: int | None = None) -> None:
    """`value` must be a whole number (not a float, not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AdapterError(f"{key} must be a whole number; got {value!r}.")
    if value < low or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"from {low} to {high:,}"
        raise AdapterError(f"{key} must be {span}; got {value!r}.")


def _real(value: Any) -> float:
    """`value` as a float when it is a finite number; NaN otherwise, which fails every range check."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


@dataclass
class Event:
    """One thing that happened in a run, as the UI, the CLI and metrics.jsonl see it."""

    kind: str  # status | data | step | eval | warning | done
    time: float = field(default_factory=time.time)
    status: str | None = None  # loading | training | completed | stopped | failed
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    lr: float | None = None
    examples_per_sec: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    metrics: dict[str, float] | None = None
    message: str | None = None
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class TrainResult:
    status: str  # completed | stopped
    adapter_dir: Path
    metrics: dict[str, float]
    steps: int
    train_seconds: float
    examples_per_sec: float
    base: Base | None = field(default=None, repr=False)  # the trained model, in memory
    plan: Plan | None = None  # the settings the run used, and which of them were chosen automatically
    warnings: list[str] = field(default_factory=list)  # before and after training, in words


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


def read_validation(config: TrainConfig, data: TaskData) -> TaskData | None:
    if not config.val_data:
        return None
    val = load_data(config.val_data, config.task, config.columns)
    if data.labels is not None:
        unknown = sorted(set(val.labels) - set(data.labels))
        if unknown:
            raise DataError(f"{val.summary.file} has labels missing from the training file: {unknown[:10]}.")
    return val


def train(
    config: TrainConfig,
    out_dir: str | Path,
    on_event: Callable[[Event], None] = lambda e: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Train adapter `config.name` and write it (the best checkpoint by validation) to `out_dir/adapter`."""
    config.check()
    out_dir = Path(out_dir)
    on_cpu = config.device == "cpu"
    accelerator = Accelerator(
        mixed_precision="no" if on_cpu else precision_for(config.precision),
        gradient_accumulation_steps=config.grad_accum,
        cpu=multi_cpu() or on_cpu,
    )
    main = accelerator.is_main_process
    emit = on_event if main else (lambda e: None)
    set_seed(config.seed)
    emit(Event("status", status="loading", message=f"Loading {config.base} and {Path(config.data).name}"))

    data = load_data(config.data, config.task, config.columns)
    val_data = read_validation(config, data)
    if val_data is None:
        train_df, val_df = split(data, config.val_fraction, config.seed)
    else:
        train_df, val_df = data.frame, val_data.frame
    with accelerator.main_process_first():  # one process converts and caches a GGUF base
        base = load_base(config.base)
    tokenizer, model = base.tokenizer, base.model
    train_ds = tokenize(train_df, config.task, tokenizer, config.max_length, data.labels)
    val_ds = tokenize(val_df, config.task, tokenizer, config.max_length, data.labels)
    describe_lengths(data.summary, concatenate_datasets([train_ds, val_ds]), config.max_length)
    emit(Event("data", message="\n".join(data.summary.lines()), info=asdict(data.summary)))
    train_ds, val_ds = drop_unanswered(train_ds), drop_unanswered(val_ds)
    if not len(train_ds) or not len(val_ds):
        raise DataError(
            f"No {'training' if not len(train_ds) else 'validation'} example has a response token within "
            f"max length {config.max_length}: every prompt fills it. Raise max length or shorten the prompts."
        )

    plan = plan_run(config, len(train_ds), train_ds["length"], model, accelerator)
    config = replace(config, batch_size=plan.batch_size, epochs=plan.epochs, lr=plan.lr)  # resolved; the caller's stays
    if main:
        record_resolved(out_dir, plan)
    add_adapter(
        model, config.name, config.adapter_config(), task=config.task, labels=data.labels, pooling=config.pooling
    )
    apply_mode(model, config)
    summary = trainable_summary(model, config.name)
    params = [p for p in model.parameters() if p.requires_grad]
    sampler = LengthGroupedBatches(train_ds["length"], config.batch_size, config.seed)
    loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=partial(collate, pad_id=tokenizer.pad_token_id))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    task_model, optimizer, loader = accelerator.prepare(TaskModel(model, config.name, config.task), optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    total = max(1, int(steps_per_epoch * config.epochs + 1e-6))
    if config.max_steps:
        total = min(total, config.max_steps)
    # Stepped by hand once per optimizer step: accelerate's wrapper would step it per process.
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    # Twice per epoch, and at most about ten times a run (a small file makes many short epochs).
    eval_every = config.eval_every or max(1, steps_per_epoch // 2, total // 10)
    device_name = torch.cuda.get_device_name() if accelerator.device.type == "cuda" else str(accelerator.device)
    trainable = sum(p.numel() for p in params)
    emit(
        Event(
            "status",
            status="training",
            total_steps=total,
            message=f"Training {trainable:,} parameters ({100 * trainable / summary.base_params:.2f}% of the base) "
            f"on {device_name}, {accelerator.num_processes} process(es): {plan.describe()}",
            info={
                "device": device_name,
                "processes": accelerator.num_processes,
                "mode": config.mode,
                "trainable": trainable,
                "percent_of_base": 100 * trainable / summary.base_params,
                "size_bytes": summary.size_bytes,
                "train_rows": len(train_ds),
                "val_rows": len(val_ds),
                "preset": plan.preset,
                "batch_size": plan.batch_size,
                "epochs": plan.epochs,
                "lr": plan.lr,
                "steps_per_epoch": steps_per_epoch,
                "total_steps": total,
                "auto": list(plan.auto),
                "estimated_seconds": plan.estimated_seconds,
                "warnings": list(plan.warnings),
            },
        )
    )
    for warning in plan.warnings:
        emit(Event("warning", message=warning, info={"when": "start"}))

    unwrapped = accelerator.unwrap_model(task_model).model
    # The best weights stay in memory too, so the returned model is the best checkpoint in every mode.
    best, best_state = None, None
    step, examples, train_time, status, losses, evals = 0, 0, 0.0, "completed", [], []

    def checkpoint(metrics: dict[str, float] | None, run_status: str) -> None:
        if main and config.mode != "full":  # a fully fine-tuned model is no adapter; it stays in memory
            meta = {
                "base_model": config.base,
                "train_config": config.to_dict(),
                "training": {
                    "auto": list(plan.auto),  # the train_config settings that the plan chose
                    "status": run_status,
                    "step": step,
                    "metrics": metrics,
                    "train_seconds": round(train_time, 2),
                },
            }
            save_adapter(unwrapped, config.name, out_dir / "adapter", extra=meta)

    start = time.perf_counter()
    task_model.train()
    # A fully fine-tuned base trains, dropout and all; a frozen one may stay deterministic.
    train_mode(unwrapped, config.base_dropout or config.mode == "full")
    try:
        while status == "completed" and step < total:
            sampler.set_epoch(step // steps_per_epoch)
            for batch in loader:
                with accelerator.accumulate(task_model):
                    loss = task_model(**batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                losses.append(float(loss.detach()))
                examples += len(batch["input_ids"]) * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                step += 1
                train_time = time.perf_counter() - start
                emit(
                    Event(
                        "step",
                        step=step,
                        total_steps=total,
                        epoch=step / steps_per_epoch,
                        loss=sum(losses) / len(losses),
                        lr=scheduler.get_last_lr()[0],
                        examples_per_sec=examples / train_time,
                        elapsed_s=train_time,
                        eta_s=train_time / step * (total - step),
                    )
                )
                losses = []
                out_of_time = bool(config.max_seconds) and train_time >= config.max_seconds
                stop = should_stop()
                if stop or out_of_time or step >= total or step % eval_every == 0:
                    paused = time.perf_counter()
                    metrics = evaluate(
                        unwrapped,
                        config.name,
                        config.task,
                        val_ds,
                        tokenizer.pad_token_id,
                        num_labels=len(data.labels or []),
                    )
                    evals.append(metrics)
                    emit(Event("eval", step=step, total_steps=total, epoch=step / steps_per_epoch, metrics=metrics))
                    if stop:  # keep what was learned so far, as it is now
                        status, best, best_state = "stopped", metrics, None
                        checkpoint(metrics, status)
                    elif is_better(config.task, metrics, best):
                        best, best_state = metrics, {id(p): p.detach().clone() for p in params}
                        checkpoint(metrics, "completed" if step >= total else "running")
                    start += time.perf_counter() - paused  # evaluation time is not training time
                if stop or out_of_time or step >= total:
                    total = step if out_of_time else total
                    break
    except torch.cuda.OutOfMemoryError:
        raise AdapterError(
            f"Out of GPU memory at batch size {config.batch_size} and max length {config.max_length}. "
            "Lower the batch size or the max length (or raise grad_accum to keep the effective batch)."
        ) from None
    accelerator.wait_for_everyone()
    if best_state is not None:
        with torch.no_grad():
            for p in params:
                p.copy_(best_state[id(p)])
    model.eval()
    if main and status == "completed" and config.mode != "full":
        checkpoint_meta_finish(out_dir / "adapter", step, train_time)
    out_of_scope = None
    if main and config.task == "classification" and config.mode != "full":
        # The saved checkpoint's weights are the model's now: the best restored, or a stopped run's last.
        out_of_scope = calibrate_adapter(unwrapped, config.name, val_ds, tokenizer.pad_token_id)
        checkpoint_meta_update(out_dir / "adapter", out_of_scope=out_of_scope)
    warnings = list(plan.warnings)
    if status == "completed":
        for warning in training_warnings(config.task, evals, step, planned_steps=plan.total_steps):
            emit(Event("warning", message=warning, info={"when": "end"}))
            warnings.append(warning)
    result = TrainResult(
        status,
        out_dir / "adapter",
        best or {},
        step,
        train_time,
        examples / max(train_time, 1e-9),
        base=base,
        plan=plan,
        warnings=warnings,
    )
    emit(
        Event(
            "done",
            status=status,
            step=step,
            total_steps=total,
            metrics=best,
            elapsed_s=train_time,
            examples_per_sec=result.examples_per_sec,
            info={
                "warnings": warnings,
                **({"out_of_scope_threshold": out_of_scope["threshold"]} if out_of_scope else {}),
            },
        )
    )
    return result


def plan_run(config: TrainConfig, rows: int, lengths: list[int], model: nn.Module, accelerator: Accelerator) -> Plan:
    """The run's plan: the settings given in `config`, and the auto ones chosen for `rows` training rows."""
    return plan_training(
        rows,
        config.task,
        config.preset,
        base=config.base,
        batch_size=config.batch_size,
        epochs=config.epochs,
        lr=config.lr,
        device="cpu" if accelerator.device.type == "cpu" else "cuda",
        tokens_per_example=sum(lengths) / max(len(lengths), 1),
        base_params=sum(p.numel() for p in model.parameters()),
        grad_accum=config.grad_accum,
        processes=accelerator.num_processes,
        max_steps=config.max_steps,
        max_seconds=config.max_seconds,
    )


def record_resolved(out_dir: Path, plan: Plan) -> None:
    """Write the resolved batch size, epochs and learning rate into the run's config.json (the CLI and
    the job manager write it before training, with None for each auto setting), noting which were auto."""
    path = out_dir / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # no run folder around this training (a library call): the adapter's meta has them
    if isinstance(saved, dict):
        saved.update(batch_size=plan.batch_size, epochs=plan.epochs, lr=plan.lr, auto=list(plan.auto))
        write_json_atomic(path, saved)


def apply_mode(model: nn.Module, config: TrainConfig) -> None:
    """`head` trains the classification head alone (the adapter stays the identity); `full` trains
    everything, as the baseline that adapters are measured against."""
    if config.mode == "head":
        for p in adapter_parameters(model, config.name).values():
            p.requires_grad_(False)
        for p in getattr(model, HEADS_ATTR)[config.name].parameters():
            p.requires_grad_(True)
    elif config.mode == "full":
        model.requires_grad_(True)


def checkpoint_meta_finish(adapter_dir: Path, steps: int, train_time: float) -> None:
    path = adapter_dir / CONFIG_FILE
    meta = json.loads(path.read_text())
    meta["training"].update(status="completed", total_steps=steps, train_seconds=round(train_time, 2))
    write_json_atomic(path, meta)


def checkpoint_meta_update(adapter_dir: Path, **sections: Any) -> None:
    """Set top-level `sections` of a saved adapter's metadata (the out-of-scope calibration)."""
    path = adapter_dir / CONFIG_FILE
    meta = json.loads(path.read_text())
    meta.update(sections)
    write_json_atomic(path, meta)
