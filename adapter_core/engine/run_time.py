"""How long a whole run takes, in one model: the timing passes, the training steps, the evaluations (a
validation pass, and an instruction run's sample answers) and the end-of-run answer scores.

Its unit is the time of one training token: the plan's rough CPU figure before a run, the measured step
time during it, and each evaluation's real time once one has been made. The same figure is what the
studio shows before Start and while the run goes ("about N min left"), so the two never disagree by
more than the machine does.
"""

from __future__ import annotations

from dataclasses import dataclass

from .answer_scores import END_OF_RUN_TOKENS
from .plan import TYPICAL_TOKENS, Plan
from .sample_answers import SAMPLE_TOKENS

# A validation pass (the forward alone) per token, against a training step's (forward and backward).
FORWARD_SHARE = 0.3
# One generated token for a batch of n rows costs about as much as training on 20 + 0.85 n tokens: each
# step passes over every weight for a single position (bench/RESULTS.md, "One time estimate").
GENERATE_FIXED, GENERATE_PER_ROW = 20.0, 0.85
TIMING_PASSES = 3  # setup.measure_step's passes, made before training when a run is long enough to be worth it
CALIBRATE_OVER_STEPS = 10  # a run of more optimizer steps times a few passes before it starts


@dataclass(frozen=True)
class RunShape:
    """What a run does, step by step: the counts the time model needs."""

    total_steps: int
    batch_size: int
    tokens: float  # mean tokens per example
    eval_every: int
    val_rows: int
    sample_rows: int = 0  # prompts answered at each evaluation (instruction runs)
    end_rows: int = 0  # answers made at the end: each scored pair by the adapter and by the bare base
    end_passes: int = 0  # rows read at the end (a router's out-of-scope statistics and its report)
    timing: bool = True  # whether setup times a few passes before training

    @property
    def evals(self) -> int:
        return evaluations(self.total_steps, self.eval_every)


def shape_of(plan: Plan, config, val_rows: int, tokens: float | None = None, total: int | None = None) -> RunShape:
    """The shape of a run of `config` (a TrainConfig) as `plan` sized it, with `val_rows` validation rows of
    `tokens` tokens on average (the task's typical length when unknown) and `total` steps (the plan's)."""
    total = plan.total_steps if total is None else total
    instruction = config.task == "instruction"
    return RunShape(
        total_steps=total,
        batch_size=plan.batch_size * config.grad_accum,
        tokens=tokens or TYPICAL_TOKENS[config.task],
        eval_every=eval_every(config.eval_every, plan.steps_per_epoch, total),
        val_rows=val_rows,
        sample_rows=min(config.sample_prompts, val_rows) if instruction else 0,
        end_rows=2 * min(config.score_pairs, val_rows) if instruction and config.mode != "full" else 0,
        end_passes=0 if instruction else val_rows + (plan.rows if config.mode != "full" else 0),
        timing=total > CALIBRATE_OVER_STEPS,
    )


def eval_every(configured: int, steps_per_epoch: int, total: int) -> int:
    """Steps between evaluations: as configured, else twice per epoch and at most about ten a run (a
    small file makes many short epochs)."""
    return configured or max(1, steps_per_epoch // 2, total // 10)


def evaluations(total: int, every: int, step: int = 0) -> int:
    """How many evaluations a run still makes at or after step `step` (whose own evaluation, if it has
    one, comes after its step event): one every `every` steps, and one at the end."""
    return total // every - (max(step, 1) - 1) // every + (1 if total % every else 0)


def generate_tokens(rows: int, new_tokens: int) -> float:
    """Generating `new_tokens` tokens for `rows` rows at once, in training tokens."""
    return new_tokens * (GENERATE_FIXED + GENERATE_PER_ROW * rows) if rows else 0.0


def eval_tokens(shape: RunShape) -> float:
    """One evaluation, in training tokens: its validation pass and its sample answers."""
    return FORWARD_SHARE * shape.val_rows * shape.tokens + generate_tokens(shape.sample_rows, SAMPLE_TOKENS)


def end_tokens(shape: RunShape) -> float:
    """The end of a run, in training tokens: an instruction adapter's answer scores; a router's pass
    over its training rows (the out-of-scope statistics) and its validation rows (report, threshold)."""
    return generate_tokens(shape.end_rows, END_OF_RUN_TOKENS) + FORWARD_SHARE * shape.end_passes * shape.tokens


def run_seconds(shape: RunShape, per_token: float) -> float:
    """The whole run, timing passes included, at `per_token` seconds per training token."""
    step = shape.batch_size * shape.tokens
    timing = TIMING_PASSES * step if shape.timing else 0.0
    tokens = timing + shape.total_steps * step + shape.evals * eval_tokens(shape) + end_tokens(shape)
    return tokens * per_token


def seconds_left(shape: RunShape, step: int, per_step: float, eval_seconds: list[float] | None = None) -> float:
    """What is left of a run at `step`, with `per_step` measured seconds per step and the seconds of the
    evaluations made so far (the model's figure until the first one)."""
    per_token = per_step / max(shape.batch_size * shape.tokens, 1e-9)
    per_eval = sum(eval_seconds) / len(eval_seconds) if eval_seconds else eval_tokens(shape) * per_token
    evals = evaluations(shape.total_steps, shape.eval_every, step)
    return (shape.total_steps - step) * per_step + evals * per_eval + end_tokens(shape) * per_token


def planned_seconds(
    plan: Plan, config, val_rows: int, tokens: float | None = None, measured: float | None = None
) -> float | None:
    """The whole run as `plan` sizes it, before it starts (None on a GPU): at `measured` seconds per
    training token where a run here measured this machine (`machine_speed`), else at the plan's CPU figure."""
    if plan.estimated_seconds is None:
        return None
    shape = shape_of(plan, config, val_rows, tokens)
    per_token = measured or plan.estimated_seconds / max(plan.total_steps * shape.batch_size * shape.tokens, 1e-9)
    return run_seconds(shape, per_token)
