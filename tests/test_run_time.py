"""One time estimate for a whole run (issue 25): training steps, evaluations and the end-of-run answers,
before a run at the plan's figure and during it from measured steps and evaluations."""

import pytest

from adapter_core.engine.config import Event
from adapter_core.engine.machine_speed import MIN_STEPS, measured_per_token, per_token_of
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
from adapter_core.engine.runs import RunRecorder, RunStore
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
    assert (shape.sample_rows, shape.end_rows, shape.end_passes) == (0, 0, 432 + 48)  # the router's statistics
    assert routing.estimated_seconds < planned_seconds(routing, config, 48) < routing.estimated_seconds * 1.3
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


# This machine's speed, as its latest run of a base measured it ---------------------------------------------
def finished_run(store, base: str, steps: int, seconds: float, device: str = "cpu", status: str = "completed"):
    """A run folder as the engine's recorder leaves it: the training event (device, batch, mean tokens)
    and the done event (steps, training seconds)."""
    run = store.create(f"{base}-run", TrainConfig(base=base, data="x.csv").to_dict())
    record = RunRecorder(run)
    info = {"device": device, "processes": 1, "batch_size": 8, "tokens_per_example": 25.0}
    record(Event("status", status="training", info=info))
    record(Event("done", step=steps, status=status, elapsed_s=seconds, metrics={}))
    return run


def test_a_finished_run_measures_this_machine_per_training_token(tmp_path):
    store = RunStore(tmp_path)
    run = finished_run(store, "minilm", steps=20, seconds=16.0)
    assert per_token_of(run) == pytest.approx(16.0 / (20 * 8 * 25))
    # What cannot stand for this machine's CPU: too few steps, another device, a failed run.
    assert per_token_of(finished_run(store, "minilm", steps=MIN_STEPS - 1, seconds=5.0)) is None
    assert per_token_of(finished_run(store, "minilm", steps=20, seconds=2.0, device="cuda:0")) is None
    assert per_token_of(finished_run(store, "minilm", steps=20, seconds=9.0, status="failed")) is None


def test_the_newest_run_of_the_base_is_the_measure_and_the_estimate_scales_with_it(tmp_path):
    store = RunStore(tmp_path)
    assert measured_per_token(store.list(), "minilm") is None  # nothing measured yet: the plan's figure
    finished_run(store, "minilm", steps=20, seconds=16.0)
    finished_run(store, "smollm2-135m-instruct", steps=50, seconds=400.0)
    finished_run(store, "minilm", steps=40, seconds=8.0)  # the last to finish
    assert measured_per_token(store.list(), "minilm") == pytest.approx(8.0 / (40 * 8 * 25))
    routing = plan_training(432, "classification", base="minilm")
    config = TrainConfig(data="x.csv")
    at_plan = planned_seconds(routing, config, 48)
    plan_rate = routing.estimated_seconds / (routing.total_steps * routing.batch_size * 24)  # typical length
    assert planned_seconds(routing, config, 48, measured=2 * plan_rate) == pytest.approx(2 * at_plan)
