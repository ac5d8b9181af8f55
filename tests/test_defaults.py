"""Defaults that learn (issue 14): runs sized in optimizer steps, warnings before and after a run, and
generation that stops at the end of the turn and out of a loop. That the Quick look's auto-sized run on
80 pairs learns their house style is tested where a user meets it: tests/test_presets_browser.py."""

import copy
import json

import pandas as pd
import pytest
import torch
from helpers import ROOT, tiny_llama
from torch import nn

from adapter_core import REPETITION_WARNING, RepetitionGuard, generate, generate_batch, load_base, stream_generate
from adapter_core.cli import build_parser
from adapter_core.engine.plan import (
    FEW_STEPS,
    PRESETS,
    plan_training,
    start_warnings,
    task_lr,
    training_warnings,
)
from adapter_core.engine.train import TrainConfig, train
from adapter_core.errors import AdapterError
from adapter_core.inference import stop_token_ids

SAMPLES = ROOT / "sample_data"


# The plan ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows, task", [(72, "instruction"), (126, "instruction"), (432, "classification")])
def test_a_small_file_gets_at_least_the_step_floor(rows, task):
    plan = plan_training(rows, task)
    assert plan.total_steps >= PRESETS["Balanced"].min_steps >= 100
    assert plan.batch_size < 32 and plan.auto == ("batch_size", "epochs", "lr")
    assert plan.total_steps == int(plan.steps_per_epoch * plan.epochs + 1e-6)
    assert plan.warnings == []


def test_the_issue_case_80_pairs_no_longer_makes_9_steps():
    old = plan_training(72, "instruction", batch_size=32, epochs=3, lr=2e-3)
    assert (old.total_steps, old.auto) == (9, ())
    assert any("only 9 optimizer steps" in w for w in old.warnings)
    new = plan_training(72, "instruction", base="smollm2-135m-instruct")
    assert new.batch_size == 8 and new.total_steps >= 100 and new.warnings == []


def test_a_large_file_keeps_batch_32_and_few_epochs():
    banking = plan_training(8100, "classification", base="minilm", tokens_per_example=16)
    assert (banking.batch_size, banking.epochs, banking.lr) == (32, 4.0, 2e-3)  # the old defaults, met there
    huge = plan_training(200_000, "classification", base="minilm")
    assert huge.batch_size == 32 and huge.epochs < 1 and huge.total_steps >= 100
    assert huge.estimated_seconds <= PRESETS["Balanced"].budget_s * 1.01
    assert any("sees" in w and "of the 200,000 rows once" in w for w in huge.warnings)
    on_gpu = plan_training(200_000, "classification", base="minilm", device="cuda")
    assert (on_gpu.batch_size, on_gpu.epochs, on_gpu.estimated_seconds, on_gpu.warnings) == (32, 4.0, None, [])


def test_a_sliced_run_is_planned_for_the_gpu_its_slices_run_on():
    """On ZeroGPU the trainer's own device is the CPU, but its steps run in GPU slices: no CPU time budget
    may cut them, as the Train tab's estimate (planned for the GPU) already promised."""
    import types

    from adapter_core.engine.setup import plan_run

    config = TrainConfig(base="minilm", data="x.csv")
    accelerator = types.SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    base = types.SimpleNamespace(num_parameters=22_700_000)
    here = plan_run(config, 200_000, [16] * 8, base, accelerator)
    sliced = plan_run(config, 200_000, [16] * 8, base, accelerator, sliced=True)
    assert here.epochs < 1 and here.estimated_seconds is not None
    assert (sliced.epochs, sliced.estimated_seconds, sliced.warnings) == (4.0, None, [])


def test_explicit_values_always_win_and_still_get_warnings():
    plan = plan_training(126, "instruction", "Quick look", batch_size=32, epochs=1, lr=3e-3)
    assert (plan.batch_size, plan.epochs, plan.lr, plan.total_steps, plan.auto) == (32, 1, 3e-3, 4, ())
    assert len(plan.warnings) == 1 and "only 4 optimizer steps" in plan.warnings[0]
    half = plan_training(126, "instruction", epochs=2)  # the batch is chosen for the epochs given
    assert half.epochs == 2 and half.batch_size == 8 and half.auto == ("batch_size", "lr")
    long = plan_training(50_000, "instruction", base="smollm2-135m-instruct", batch_size=32, epochs=4)
    assert any("roughly" in w and "hours" in w for w in long.warnings)
    capped = plan_training(50_000, "instruction", base="smollm2-135m-instruct", epochs=4, max_seconds=600)
    assert not any("roughly" in w for w in capped.warnings)  # a time budget already bounds it


def test_quick_look_is_sized_to_about_two_minutes_on_a_cpu():
    """Quick look on SmolLM2 and a 126-row instruction file: batch 4 keeps its 50 steps within its 2-minute
    budget, where batch 8 would take about 3; Balanced keeps batch 8, and MiniLM is quick at batch 8."""
    quick = plan_training(126, "instruction", "Quick look", base="smollm2-135m-instruct")
    assert (quick.batch_size, quick.total_steps) == (4, 50) and quick.estimated_seconds <= 120 and not quick.warnings
    assert PRESETS["Quick look"].budget_s == 120
    balanced = plan_training(126, "instruction", base="smollm2-135m-instruct")
    assert (balanced.batch_size, balanced.total_steps) == (8, 100)
    routing = plan_training(432, "classification", "Quick look", base="minilm")
    assert routing.batch_size == 8 and routing.total_steps >= 50 and routing.estimated_seconds <= 30


def test_presets_keep_their_meaning_and_every_sample_gets_enough_steps():
    assert [(p.name, p.bottleneck) for p in PRESETS.values()] == [
        ("Quick look", 16),
        ("Balanced", 64),
        ("Capacity", 256),
    ]
    assert PRESETS["Quick look"].min_steps < PRESETS["Balanced"].min_steps < PRESETS["Capacity"].min_steps
    assert task_lr("classification") == 2e-3 and task_lr("instruction") == 1e-3
    assert task_lr("instruction", "Quick look") > task_lr("instruction") > task_lr("instruction", "Capacity")
    samples = {
        "support_routing.csv": "classification",
        "orders_sft.csv": "instruction",
        "tech_support_sft.csv": "instruction",
        "billing_sft.csv": "instruction",
        "house_style_sft.csv": "instruction",
    }
    for file, task in samples.items():
        rows = len(pd.read_csv(SAMPLES / file))
        train_rows = rows - round(0.1 * rows)
        for preset in PRESETS:
            plan = plan_training(train_rows, task, preset, base="minilm" if task == "classification" else None)
            assert plan.total_steps >= FEW_STEPS, (file, preset, plan)
            assert plan.warnings == [], (file, preset, plan.warnings)


def test_start_warnings_in_words():
    plan = plan_training(40, "classification", batch_size=32, epochs=1)
    (warning,) = start_warnings(plan)
    assert warning.startswith("This run makes only 2 optimizer steps (40 rows at batch 32, 1 epochs)")


def test_training_warnings_when_the_metric_barely_moved():
    flat = [{"val_loss": 1.10, "accuracy": 0.34}, {"val_loss": 1.099, "accuracy": 0.345}]
    (warning,) = training_warnings("classification", flat, steps=200)
    assert "barely moved" in warning and "34.0% to at best 34.5%" in warning
    learned = [
        {"val_loss": 1.0, "accuracy": 0.5},
        {"val_loss": 0.3, "accuracy": 0.9},
        {"val_loss": 0.29, "accuracy": 0.9},
    ]
    assert training_warnings("classification", learned, steps=200) == []
    # Already right at the first evaluation, and the loss still fell: no warning.
    easy = [
        {"val_loss": 0.2, "accuracy": 0.97},
        {"val_loss": 0.1, "accuracy": 0.975},
        {"val_loss": 0.1, "accuracy": 0.975},
    ]
    assert training_warnings("classification", easy, steps=200) == []
    stuck = [{"val_loss": 2.0}, {"val_loss": 1.99}, {"val_loss": 1.985}]
    assert "barely moved" in training_warnings("instruction", stuck, steps=200)[0]
    falling = [{"val_loss": 2.0}, {"val_loss": 1.5}, {"val_loss": 1.0}]
    (warning,) = training_warnings("instruction", falling, steps=60)
    assert "still falling" in warning
    # Cut short (a time budget, say) of a plan that had enough steps: said after the run.
    assert "only 10 optimizer steps" in training_warnings("instruction", [{"val_loss": 1.0}], 10, planned_steps=100)[0]
    assert training_warnings("instruction", [{"val_loss": 1.0}], 10, planned_steps=10) == []  # said before


# TrainConfig and the CLI --------------------------------------------------------------------------------
def test_train_config_defaults_to_auto_and_checks_what_is_given():
    config = TrainConfig(data="x.csv")
    assert (config.batch_size, config.epochs, config.lr, config.preset) == (None, None, None, "Balanced")
    config.check()
    for bad in ({"batch_size": 0}, {"epochs": -1.0}, {"lr": "fast"}, {"preset": "Turbo"}, {"batch_size": 2.5}):
        with pytest.raises(AdapterError):
            TrainConfig(data="x.csv", **bad).check()
    assert TrainConfig.from_dict({"data": "x.csv", "epochs": 4.0, "batch_size": 32}).lr is None


def test_cli_train_options_default_to_auto():
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d.csv", "--out", "o"])
    assert (args.batch_size, args.epochs, args.lr, args.bottleneck, args.preset) == (None, None, None, None, "Balanced")
    args = parser.parse_args(
        ["train", "--data", "d.csv", "--out", "o", "--batch-size", "8", "--epochs", "3", "--lr", "1e-3"]
    )
    assert (args.batch_size, args.epochs, args.lr) == (8, 3.0, 1e-3)
    assert parser.parse_args(["train", "--data", "d", "--out", "o", "--preset", "quick-look"]).preset == "Quick look"
    train_help = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "epochs")
    assert "auto" in train_help.help and train_help.default == "auto"


def test_train_resolves_auto_settings_reports_them_and_warns(tmp_path):
    """A MiniLM run with every auto setting and a learning rate too small to learn: the plan is in the
    'training' event and the run's config.json, and warnings come before (few steps) and after (flat)."""
    (tmp_path / "config.json").write_text(json.dumps({"data": "as the CLI wrote it", "lr": 1e-9, "epochs": None}))
    events = []
    config = TrainConfig(
        data=str(SAMPLES / "support_routing.csv"), name="r", lr=1e-9, max_steps=4, eval_every=2, max_length=32
    )
    result = train(config, tmp_path, events.append)
    assert config.batch_size is None and config.epochs is None  # the caller's config is left as it was
    info = next(e.info for e in events if e.kind == "status" and e.status == "training")
    assert (info["batch_size"], info["epochs"], info["lr"], info["auto"]) == (16, 4.0, 1e-9, ["batch_size", "epochs"])
    assert info["total_steps"] == 4 and info["steps_per_epoch"] == 27 and info["preset"] == "Balanced"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["batch_size"], saved["epochs"], saved["lr"], saved["auto"]) == (
        16,
        4.0,
        1e-9,
        ["batch_size", "epochs"],
    )
    meta = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert meta["train_config"]["batch_size"] == 16 and meta["training"]["auto"] == ["batch_size", "epochs"]
    warnings = [e.message for e in events if e.kind == "warning"]
    assert len(warnings) == 2 and "only 4 optimizer steps" in warnings[0] and "barely moved" in warnings[1]
    done = events[-1]
    assert done.kind == "done" and done.info["warnings"] == warnings == result.warnings
    assert result.plan.batch_size == 16


# Generation: end of turn and the repetition guard ---------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return load_base("smollm2-135m-instruct").tokenizer


def constant_model(tokenizer, token_id: int, eos: int) -> nn.Module:
    """A tiny random Llama over `tokenizer`'s vocabulary whose every next token is `token_id`."""
    model = tiny_llama(tokenizer, eos_token_id=eos)
    model.generation_config.eos_token_id = eos
    head = nn.Linear(16, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.lm_head = head
    return model


def count_forwards(model: nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    return calls


def test_end_of_turn_is_found_from_the_chat_template(tokenizer):
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tokenizer) == [im_end]
    other = copy.deepcopy(tokenizer)
    other.eos_token = "<|endoftext|>"  # as in tokenizers whose eos is not the end of a turn
    eos = other.eos_token_id
    assert eos != im_end and set(stop_token_ids(other)) == {eos, im_end}


def test_generation_stops_at_the_end_of_turn_token_as_well_as_eos(tokenizer):
    other = copy.deepcopy(tokenizer)
    other.eos_token = "<|endoftext|>"
    im_end = other.convert_tokens_to_ids("<|im_end|>")
    model = constant_model(other, im_end, eos=other.eos_token_id)  # answers <|im_end|> at once; eos is another
    calls = count_forwards(model)
    assert generate(model, other, "Hello?", None, max_new_tokens=20) == ""
    assert len(calls) == 1
    calls.clear()
    assert "".join(stream_generate(model, other, "Hello?", None, max_new_tokens=20)) == ""
    assert len(calls) == 1
    calls.clear()
    assert generate_batch(model, other, ["Hello?", "A longer question, this one?"], None, 20) == ["", ""]
    assert len(calls) == 1


def test_the_repetition_guard_spots_a_loop_per_row():
    guard = RepetitionGuard(stop_ids=[2])
    assert guard.repeating([5, 6, 7] * 4) == 3
    assert guard.repeating([9] * 12) == 1 and guard.repeating([9] * 11) is None
    assert guard.repeating([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]) is None
    assert guard.repeating([4, 1, 1, 1, 2, 1, 1, 1]) is None  # "1 1 1" in a list
    prompt = [[3, 3, 3, 3]] * 3
    rows = [[40, 41, 42] * 5, list(range(50, 65)), [30, 31, 2] + [2] * 12]  # a loop, prose, an ended answer
    ids = torch.tensor([p + r for p, r in zip(prompt, rows, strict=True)])
    guard.reset(prompt_length=4)
    for width in range(5, ids.shape[1] + 1):
        done = guard(ids[:, :width], None)
    assert done.tolist() == [True, False, False] and guard.fired == [True, False, False] and guard.any
    guard.reset(prompt_length=4)
    assert guard.fired == [] and not guard.any


def test_generation_stops_a_loop_and_says_so(tokenizer):
    token = tokenizer.convert_tokens_to_ids("Ġhello")
    model = constant_model(tokenizer, token, eos=tokenizer.eos_token_id)
    calls = count_forwards(model)
    guard = RepetitionGuard()
    text = generate(model, tokenizer, "Hi", None, max_new_tokens=40, guard=guard)
    assert guard.any and len(calls) == guard.min_tokens and text.split() == ["hello"] * 12  # shown, not hidden
    calls.clear()
    pieces = list(stream_generate(model, tokenizer, "Hi", None, max_new_tokens=40, guard=guard))
    assert guard.fired == [True] and "".join(pieces).count("hello") == 12
    calls.clear()
    assert generate(model, tokenizer, "Hi", None, max_new_tokens=40, guard=False).count("hello") == 40
    calls.clear()
    answers = generate_batch(model, tokenizer, ["Hi", "Hello there"], None, 40, guard=guard)
    assert guard.fired == [True, True] and len(calls) == 12 and all(a.count("hello") == 12 for a in answers)
    assert "repeats itself" in REPETITION_WARNING and "under-trained" in REPETITION_WARNING
