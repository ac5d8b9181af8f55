"""One time estimate for a whole run (issue 25): training steps, evaluations and the end-of-run answers,
before a run at the plan's figure and during it from measured steps and evaluations."""

import pytest

from adapter_core.engine.plan import plan_training
from adapter_core.engine.run_time import (
    RunShape,
    end_tokens,
    eval_tokens,
    evaluations,
    planned_seconds,
    run_seconds,
    seconds_left,
    shape_of,
)
from adapter_core.engine.train import TrainConfig


def test_evaluations_left_count_the_one_at_the_current_step_and_the_last():
    assert evaluations(50, 16) == 4  # steps 16, 32, 48 and the last, 50
    assert evaluations(50, 25) == 2  # 25 and 50: the last is one of them
    assert evaluations(50, 16, step=16) == 4  # step 16's own evaluation comes after its step event
    assert evaluations(50, 16, step=17) == 3 and evaluations(50, 16, step=49) == 1
    assert evaluations(50, 25, step=50) == 1 and evaluations(12, 100, step=12) == 1


def test_an_instruction_run_is_more_than_its_steps_and_a_classification_run_barely():
    quick = plan_training(113, "instruction", "Quick look", base="smollm2-135m-instruct")
    config = TrainConfig(task="instruction", data="x.csv", preset="Quick look")
    shape = shape_of(quick, config, val_rows=14)
    assert (shape.sample_rows, shape.end_rows, shape.eval_every, shape.evals, shape.timing) == (3, 16, 14, 4, True)
    whole = planned_seconds(quick, config, 14)
    assert quick.estimated_seconds * 1.15 < whole < quick.estimated_seconds * 1.6  # evaluations answer prompts
    routing = plan_training(432, "classification", base="minilm")
    config = TrainConfig(data="x.csv")
    shape = shape_of(routing, config, val_rows=48)
    assert (shape.sample_rows, shape.end_rows) == (0, 0)
    assert routing.estimated_seconds < planned_seconds(routing, config, 48) < routing.estimated_seconds * 1.15
    full = shape_of(quick, TrainConfig(task="instruction", data="x.csv", mode="full"), 14)
    assert full.end_rows == 0  # a full fine-tune keeps no adapter to score
    on_gpu = plan_training(113, "instruction", base="smollm2-135m-instruct", device="cuda")
    assert planned_seconds(on_gpu, config, 14) is None


def test_time_left_is_the_same_model_refreshed_from_measured_steps_and_evaluations():
    shape = RunShape(total_steps=50, batch_size=4, tokens=100, eval_every=16, val_rows=14, sample_rows=3, end_rows=16)
    per_step, per_token = 2.0, 2.0 / 400
    # Before the first step, time left is the whole run less its timing passes, at the same per-token cost.
    assert seconds_left(shape, 0, per_step) == pytest.approx(run_seconds(shape, per_token) - 3 * per_step)
    model_eval = eval_tokens(shape) * per_token
    assert seconds_left(shape, 20, per_step) == pytest.approx(
        30 * per_step + 3 * model_eval + end_tokens(shape) * per_token
    )
    # Once evaluations have been made, their measured time replaces the model's.
    measured = seconds_left(shape, 20, per_step, [40.0, 50.0])
    assert measured == pytest.approx(30 * per_step + 3 * 45.0 + end_tokens(shape) * per_token)
    assert seconds_left(shape, 50, per_step, [45.0]) == pytest.approx(45.0 + end_tokens(shape) * per_token)
