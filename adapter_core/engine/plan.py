"""How long to train: batch size, epochs and learning rate chosen from the data, sized in optimizer steps.

A run learns per optimizer step, not per epoch. At batch 32, three epochs over 80 rows are 9 steps,
too few for an adapter to pick up even a rigid house style; at batch 8 the same examples make 27
steps in the same time. `plan_training` therefore sizes a run in steps: a file large enough to give
the preset's step floor in the preset's epochs keeps batch 32 (and is cut to the time budget, never
below the floor); a smaller file gets a smaller batch (16, then 8, or 4 where the preset's time budget
cannot pay for batch 8) and, where that is not enough, more epochs, up to `MAX_EPOCHS`. Explicit values
always win; the plan then only counts and warns.

The presets live here as data, for the studio and the CLI alike. `start_warnings` says in words when
a run will make too few steps or is likely to be long on the device; `training_warnings` reads a
finished run's evaluations and says when the validation metric barely moved.

Time estimates use a per-token training cost measured on the project's CI machine (2 shared x86-64
cores, torch 2.13 CPU, the frozen base in eval mode; bench/RESULTS.md, "Defaults that learn"): a rough
figure for a budget and a warning, not a promise. A GPU has no estimate: runs there are short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BATCH_SIZES = (32, 16, 8)  # tried largest first; the first that reaches the step floor within the budget wins
SMALL_BATCHES = (8, 4)  # where none does (a small file): more epochs at 8, or at 4 where 8 is over the budget
MAX_EPOCHS = 20.0  # the most passes a small file gets to reach the floor (the public studio's limit too)
FEW_STEPS = 50  # fewer optimizer steps than this: warn before the run starts
LR = {"classification": 2e-3, "instruction": 1e-3}  # the Balanced adapter's rate per task (r=64)

# Seconds of training (forward, backward, AdamW) per token of a batch on the CI machine's CPU, the base
# frozen in eval mode, adapter r=64: bench/defaults.py's seconds_per_token column measured 0.36-0.77 ms
# for MiniLM (batch 32 down to 8, quiet to busy) and 4.2-6.0 ms for SmolLM2 at 1 thread; RESULTS.md's
# earlier runs at 2 threads, 0.72 ms (BANKING77) and 6.3 ms (response_loss.py). Kept on the slow side.
CPU_SECONDS_PER_TOKEN = {"minilm": 0.00075, "smollm2-135m-instruct": 0.005}
CPU_SECONDS_PER_TOKEN_PER_PARAM = 0.005 / 135e6  # other bases, scaled from SmolLM2 by parameter count
TYPICAL_TOKENS = {"classification": 24, "instruction": 100}  # when the caller does not know the lengths
LONG = 1.1  # warn when the estimate is over the preset's budget by more than this factor


@dataclass(frozen=True)
class Preset:
    """A training recipe: the adapter's width and how far to train it."""

    name: str
    bottleneck: int  # adapter width r
    min_steps: int  # optimizer steps the plan aims for at least (a small file gets a smaller batch or more epochs)
    epochs: float  # passes over a file large enough to reach `min_steps` in them
    lr_scale: float  # times the task's learning rate: a narrow adapter takes a larger rate, a wide one a smaller
    budget_s: float  # rough training time on a CPU above which epochs over the floor are cut, and a warning given
    description: str

    @property
    def label(self) -> str:
        """What a picker shows: the name and the width."""
        return f"{self.name} (r={self.bottleneck})"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "Quick look",
            bottleneck=16,
            min_steps=FEW_STEPS,
            epochs=1.0,
            lr_scale=1.5,
            budget_s=120,  # a first useful result in about 2 minutes, SmolLM2 on 2 CPU cores included
            description="A narrow adapter and a short run (about 2 minutes), still long enough to learn a house style.",
        ),
        Preset(
            "Balanced",
            bottleneck=64,
            min_steps=100,
            epochs=4.0,
            lr_scale=1.0,
            budget_s=600,
            description="The default: a mid-sized adapter, at least 100 optimizer steps.",
        ),
        Preset(
            "Capacity",
            bottleneck=256,
            min_steps=150,
            epochs=4.0,
            lr_scale=0.5,
            budget_s=1200,
            description="A wide adapter for large or varied data: a lower rate and more steps.",
        ),
    )
}
DEFAULT_PRESET = "Balanced"


@dataclass
class Plan:
    """What a run will do. `auto` names the settings the plan chose (the others were given)."""

    rows: int  # training rows (the validation split excluded)
    task: str
    preset: str
    batch_size: int
    epochs: float
    lr: float
    steps_per_epoch: int
    total_steps: int
    estimated_seconds: float | None  # rough training time on a CPU; None on a GPU
    auto: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for a log or a status: the resolved settings and the step count."""
        chosen = f" (chosen automatically: {', '.join(self.auto)})" if self.auto else ""
        return (
            f"{self.total_steps} optimizer steps: batch {self.batch_size}, {self.epochs:g} epoch{'' if self.epochs == 1 else 's'} "
            f"of {self.steps_per_epoch} steps, learning rate {self.lr:g}{chosen}"
        )


def preset_of(text: str) -> str:
    """A preset's name as PRESETS spells it, from its name in any case (with - or _ for spaces, as in
    quick-look) or its label ("Balanced (r=64)"); anything else comes back as it was, to be refused."""
    wanted = str(text).replace("-", " ").replace("_", " ").strip().lower()
    found = (p.name for p in PRESETS.values() if wanted in (p.name.lower(), p.label.lower()))
    return next(found, text)


def get_preset(preset: str | Preset | None) -> Preset:
    if isinstance(preset, Preset):
        return preset
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}.")
    return PRESETS[name]


def task_lr(task: str, preset: str | Preset | None = None) -> float:
    """The learning rate a preset's adapter trains at for `task`: classification trains a new head from
    scratch and takes 2e-3; instruction tuning nudges a pretrained LM's outputs and takes 1e-3."""
    if task not in LR:
        raise ValueError(f"task must be classification or instruction; got {task!r}.")
    return LR[task] * get_preset(preset).lr_scale


def steps_for(rows: int, batch_size: int, epochs: float, grad_accum: int = 1, processes: int = 1) -> tuple[int, int]:
    """(steps per epoch, total steps) as the training loop counts them."""
    batches = math.ceil(math.ceil(rows / batch_size) / processes)
    per_epoch = max(1, math.ceil(batches / grad_accum))
    return per_epoch, max(1, int(per_epoch * epochs + 1e-6))


def seconds_per_example(base: str | None, task: str, tokens: float | None = None, params: int | None = None) -> float:
    """Rough CPU training seconds per example of `tokens` tokens for base model `base`."""
    per_token = CPU_SECONDS_PER_TOKEN.get(base or "")
    if per_token is None:
        per_token = (
            CPU_SECONDS_PER_TOKEN_PER_PARAM * params if params else CPU_SECONDS_PER_TOKEN["smollm2-135m-instruct"]
        )
    return per_token * (tokens or TYPICAL_TOKENS[task])


def plan_training(
    rows: int,
    task: str,
    preset: str | Preset | None = None,
    *,
    base: str | None = None,
    batch_size: int | None = None,
    epochs: float | None = None,
    lr: float | None = None,
    device: str = "cpu",
    tokens_per_example: float | None = None,
    base_params: int | None = None,
    grad_accum: int = 1,
    processes: int = 1,
    max_steps: int = 0,
    max_seconds: float = 0,
) -> Plan:
    """Batch size, epochs and learning rate for `rows` training rows of `task`, sized in optimizer steps.

    Each of `batch_size`, `epochs` and `lr` given (not None) is kept as it is; the others are chosen:
    the largest batch of 32, 16, 8 whose steps over the preset's epochs reach its step floor, and whose
    floor fits the preset's time budget on a CPU (else 8, or 4 where 8 does not fit the budget); epochs
    enough for the floor (at least the preset's, at most MAX_EPOCHS), those over the floor cut to the
    time budget; the task's learning rate. `device` is "cpu" or "cuda" (no time estimate there);
    `tokens_per_example` (the mean tokenised length) sharpens the estimate; `base_params` scales it for a
    base not measured here.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1; got {rows!r}.")
    p = get_preset(preset)
    auto = tuple(k for k, v in (("batch_size", batch_size), ("epochs", epochs), ("lr", lr)) if v is None)
    lr = task_lr(task, p) if lr is None else lr
    cost = seconds_per_example(base, task, tokens_per_example, base_params) if device == "cpu" else None

    def spe(b: int) -> int:
        return steps_for(rows, b, 1, grad_accum, processes)[0]

    def affordable(b: int) -> bool:  # the step floor at batch b within the preset's time budget
        return cost is None or p.min_steps * b * grad_accum * processes * cost <= p.budget_s

    def fits(b: int) -> bool:  # the floor in the preset's (or the given) epochs, and within the budget
        return spe(b) * (p.epochs if epochs is None else epochs) >= p.min_steps and affordable(b)

    if batch_size is None:
        small = next((b for b in SMALL_BATCHES if affordable(b)), SMALL_BATCHES[-1])
        batch_size = next((b for b in BATCH_SIZES if fits(b)), small)
    if epochs is None:
        per_epoch = spe(batch_size)
        floor = p.min_steps / per_epoch  # epochs to reach the step floor
        epochs = min(max(p.epochs, floor), MAX_EPOCHS)
        if cost is not None and rows * epochs * cost > p.budget_s:  # cut passes over the floor to the budget
            epochs = max(min(epochs, floor), p.budget_s / (rows * cost))
        epochs = _round_up(epochs, per_epoch)
    per_epoch, total = steps_for(rows, batch_size, epochs, grad_accum, processes)
    if max_steps:
        total = min(total, max_steps)
    seconds = None if cost is None else total * batch_size * grad_accum * processes * cost
    if seconds is not None:
        seconds = min(seconds, rows * epochs * cost)  # the last batch of an epoch may be short
        if max_seconds:
            seconds = min(seconds, max_seconds)
    plan = Plan(rows, task, p.name, batch_size, epochs, lr, per_epoch, total, seconds, auto)
    plan.warnings = start_warnings(plan, budget_s=p.budget_s, max_seconds=max_seconds)
    return plan


def _round_up(epochs: float, per_epoch: int) -> float:
    """Epochs for a whole number of steps, with at most four decimals (never fewer steps than asked)."""
    steps = math.ceil(epochs * per_epoch - 1e-6)
    return math.ceil(1e4 * steps / per_epoch - 1e-6) / 1e4


def start_warnings(plan: Plan, budget_s: float | None = None, max_seconds: float = 0) -> list[str]:
    """Before a run: too few optimizer steps to learn from, or likely long on this device, in words."""
    out = []
    if plan.total_steps < FEW_STEPS:
        out.append(
            f"This run makes only {plan.total_steps} optimizer steps ({plan.rows} rows at batch "
            f"{plan.batch_size}, {plan.epochs:g} epochs); adapters usually need {FEW_STEPS} or more to learn. "
            "Leave batch size and epochs on auto, or lower the batch size or raise the epochs."
        )
    budget = get_preset(plan.preset).budget_s if budget_s is None else budget_s
    if plan.estimated_seconds is not None and plan.estimated_seconds > LONG * budget and not max_seconds:
        out.append(
            f"Training will take roughly {_duration(plan.estimated_seconds)} on this CPU "
            f"({plan.total_steps} steps at batch {plan.batch_size}). Lower the epochs or the max length, set a "
            "time budget, or train on a GPU."
        )
    if "epochs" in plan.auto and plan.epochs < 1 and plan.estimated_seconds is not None:
        out.append(
            f"To stay within about {_duration(budget)} on this CPU, training sees {plan.epochs:.0%} of the "
            f"{plan.rows:,} rows once. Set the epochs (1 or more) to use them all, or train on a GPU."
        )
    return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


# A finished run's validation metric moved less than this from its first evaluation to its best:
MIN_GAIN = {"accuracy": 0.01, "val_loss": 0.02}  # accuracy in points of 1; val_loss relative


def training_warnings(
    task: str, evals: list[dict[str, float]], steps: int, planned_steps: int | None = None
) -> list[str]:
    """After a run, from its evaluations in order: warn when the validation metric barely moved from the
    first evaluation to the best (nothing learned after the first evaluation: a rate too low or too high,
    or too few steps), and when validation loss was still falling fast as the run ended. Too few steps
    are reported here only when the run was cut short of `planned_steps` (`start_warnings` says it before
    a run planned that short)."""
    out = []
    if steps < FEW_STEPS and (planned_steps is None or planned_steps >= FEW_STEPS):
        out.append(
            f"The run made only {steps} optimizer steps; the adapter is probably under-trained. "
            "Train with more steps (a smaller batch or more epochs)."
        )
    if len(evals) < 2:
        return out
    first, last, previous = evals[0], evals[-1], evals[-2]
    loss_first = first["val_loss"]
    best_loss = min(e["val_loss"] for e in evals)
    loss_gain = (loss_first - best_loss) / max(abs(loss_first), 1e-9)
    if task == "classification":
        acc_gain = max(e["accuracy"] for e in evals) - first["accuracy"]
        barely = acc_gain < MIN_GAIN["accuracy"] and loss_gain < MIN_GAIN["val_loss"]
        moved = f"validation accuracy went from {first['accuracy']:.1%} to at best {first['accuracy'] + acc_gain:.1%}"
    else:
        barely = loss_gain < MIN_GAIN["val_loss"]
        moved = f"validation loss went from {loss_first:.3f} to at best {best_loss:.3f}"
    if barely:
        out.append(
            f"The validation metric barely moved during training ({moved}). The adapter may have learned "
            "little: check the data, or try another learning rate or more steps."
        )
    still = (previous["val_loss"] - last["val_loss"]) / max(abs(previous["val_loss"]), 1e-9)
    if last["val_loss"] <= best_loss and still > 0.1 and steps < 4 * FEW_STEPS:
        out.append(
            f"Validation loss was still falling fast when training ended ({previous['val_loss']:.3f} to "
            f"{last['val_loss']:.3f} over the last evaluations): more steps would likely help."
        )
    return out
