"""The out-of-scope threshold: its quantile rule, the metadata it is saved in, and training writing it."""

import json
from pathlib import Path

import pytest
import torch
from helpers import ROUTING, tiny_model
from transformers import AutoTokenizer

import adapter_core.engine.setup as engine
from adapter_core import AdapterConfig, AdapterError, add_adapter, classify, get_record, save_adapter
from adapter_core.catalog import CATALOG, Base, embedded_path
from adapter_core.engine.batches import tokenize
from adapter_core.engine.calibration import FALSE_REJECTION, Predictions, calibrate, confidences, threshold_for
from adapter_core.engine.data import load_data
from adapter_core.engine.metrics import evaluate
from adapter_core.engine.train import TrainConfig, train
from adapter_core.io import CONFIG_FILE, STATS_FILE, read_adapter_config
from adapter_core.out_of_scope import DEFAULT_SCORE, scores
from adapter_core.placement import model_family
from adapter_core.routing import out_of_scope_rule
from adapter_core.schema import validate_meta
from adapter_core.state import ensure_state


def test_threshold_keeps_the_stated_share_of_all_in_scope_rows():
    values = torch.arange(1, 101, dtype=torch.float32) / 100  # out-of-scope scores: higher is further out
    t = threshold_for(values)
    assert FALSE_REJECTION == 0.05 and t == pytest.approx(0.95)
    assert int((values <= t).sum()) == 95  # exactly the share asked for stays in scope
    assert threshold_for(values, 0.5) == pytest.approx(0.50)
    assert threshold_for(values, 0.0) == pytest.approx(1.0)
    assert threshold_for(torch.tensor([0.3, 0.3, 0.3, 0.9]), 0.5) == pytest.approx(0.3)  # ties keep more


def test_every_validation_row_counts_right_or_wrong():
    """The old rule kept 95% of the correctly classified rows, rejecting more in-scope traffic than its
    setting said: here half the rows are wrong, and those are the least confident."""
    n = 200
    logits = torch.zeros(n, 3)
    logits[:, 0] = torch.linspace(0.1, 6, n)  # rising confidence in label 0
    gold = [1] * (n // 2) + [0] * (n // 2)  # the least confident half is wrong
    val = Predictions([0] * n, [0.0] * n, gold, [0.0] * n, torch.randn(n, 4), logits)
    section = calibrate(val, None, "msp")
    kept = (scores("msp", val.features, logits, None)["msp"] <= section["threshold"]).float().mean()
    assert section["score"] == "msp" and section["validation_rows"] == n
    assert float(kept) == pytest.approx(0.95)  # of all rows, not of the 100 right ones


def test_calibrate_refuses_what_it_cannot_use():
    with pytest.raises(AdapterError, match="No validation rows"):
        threshold_for(torch.tensor([]))
    with pytest.raises(AdapterError, match="false-rejection rate"):
        threshold_for(torch.tensor([0.5]), 1.0)
    with pytest.raises(AdapterError, match="Unknown out-of-scope score"):
        calibrate(Predictions([0], [1.0], [0], [0.0], torch.zeros(1, 2), torch.zeros(1, 2)), None, "magic")


def test_out_of_scope_rule_reads_the_metadata_or_gives_none():
    legacy = out_of_scope_rule({"out_of_scope": {"threshold": 0.72}})  # saved before scores had names
    assert legacy["score"] == "msp" and legacy["threshold"] == pytest.approx(0.28)
    rule = out_of_scope_rule({"out_of_scope": {"score": "mahalanobis", "threshold": 412.5, "false_rejection": 0.05}})
    assert rule == {"score": "mahalanobis", "threshold": 412.5, "false_rejection": 0.05}
    assert out_of_scope_rule({}) is None
    assert out_of_scope_rule({"out_of_scope": None}) is None
    assert out_of_scope_rule({"out_of_scope": {"threshold": "0.4"}}) is None


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))


@pytest.fixture
def tiny_base(monkeypatch, tokenizer):
    """Training loads a tiny BERT (hidden 32, 2 layers) with MiniLM's tokenizer instead of a real base."""

    def load(name):
        model = tiny_model("bert", head="base")
        model.resize_token_embeddings(len(tokenizer))
        family = model_family(model)
        ensure_state(model, family).base_name = name
        return Base(name, model, tokenizer, family)

    monkeypatch.setattr(engine, "load_base", load)


@pytest.mark.parametrize("stop", [False, True])
def test_training_saves_a_valid_decision_with_the_adapter(tiny_base, tmp_path, stop):
    config = TrainConfig(data=ROUTING, name="route", max_steps=3, batch_size=32, max_length=48)
    events = []
    result = train(config, tmp_path, events.append, should_stop=lambda: stop)
    assert result.status == ("stopped" if stop else "completed")
    folder = tmp_path / "adapter"
    meta = json.loads((folder / CONFIG_FILE).read_text())
    section = meta["out_of_scope"]
    assert section["score"] == DEFAULT_SCORE == "energy_knn" and section["false_rejection"] == FALSE_REJECTION
    assert section["validation_rows"] == 48  # 10% of 480
    assert len(section["curve"]["threshold"]) == len(section["curve"]["false_rejection"]) == 51
    assert 0 <= section["msp_threshold"] <= 1 and (folder / STATS_FILE).is_file()
    assert meta["training"]["status"] == result.status
    validate_meta(meta)
    assert read_adapter_config(folder) == meta
    record = get_record(result.base.model, "route")
    assert record.detector.score == DEFAULT_SCORE and record.detector.threshold == section["threshold"]
    done = events[-1]
    assert done.kind == "done" and done.info["out_of_scope"]["score"] == DEFAULT_SCORE


def test_full_fine_tuning_saves_no_adapter_to_calibrate(tiny_base, tmp_path):
    config = TrainConfig(data=ROUTING, name="route", max_steps=1, batch_size=32, max_length=48, mode="full")
    events = []
    train(config, tmp_path, events.append)
    assert not (tmp_path / "adapter").exists() and "out_of_scope_threshold" not in events[-1].info


def test_confidences_are_per_row_in_row_order_and_agree_with_classify(tiny_base, tmp_path):
    config = TrainConfig(data=ROUTING, name="route", max_steps=3, batch_size=32, max_length=48)
    result = train(config, tmp_path)
    model, tok = result.base.model, result.base.tokenizer
    data = load_data(ROUTING, "classification")
    frame = data.frame.iloc[:70]  # more than one batch of 64
    ds = tokenize(frame, "classification", tok, 48, data.labels)
    conf, correct = confidences(model, "route", ds, tok.pad_token_id)
    preds = classify(model, tok, list(frame["text"]), "route", max_length=48)
    assert conf == pytest.approx([p.confidence for p in preds], abs=1e-5)
    assert correct == [p.label == g for p, g in zip(preds, frame["label"], strict=True)]
    accuracy = evaluate(model, "route", "classification", ds, tok.pad_token_id, num_labels=3)["accuracy"]
    assert sum(correct) / len(correct) == pytest.approx(accuracy)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"threshold": 2}, "'out_of_scope.threshold' must be a number from 0 to 1; got 2"),
        ({"threshold": "0.5"}, "'out_of_scope.threshold' must be a number from 0 to 1; got \"0.5\""),
        ({"threshold": float("nan")}, "'out_of_scope.threshold' must be a number from 0 to 1"),
        ({}, "'out_of_scope.threshold' must be a number from 0 to 1; got nothing"),
        ("0.5", "'out_of_scope' must be an object with a threshold, or null"),
        ({"threshold": 0.5, "validation_rows": "many"}, "'out_of_scope.validation_rows' must be a number"),
        (
            {"score": "magic", "threshold": 0.5},
            "'out_of_scope.score' must be one of msp, energy, mahalanobis, relative_mahalanobis, knn",
        ),
        ({"score": "mahalanobis", "threshold": "far"}, "'out_of_scope.threshold' must be a number; got \"far\""),
        ({"score": "msp", "threshold": 3}, "'out_of_scope.threshold' must be a number from 0 to 1; got 3"),
        ({"score": "knn", "threshold": 0.5, "curve": {"a": [1], "b": [1, 2]}}, "'out_of_scope.curve' must map"),
    ],
)
def test_validate_meta_refuses_a_bad_threshold(tmp_path, section, message):
    meta = saved_meta(tmp_path)
    validate_meta({**meta, "out_of_scope": None})
    with pytest.raises(AdapterError, match=message.replace("(", r"\(")) as e:
        validate_meta({**meta, "out_of_scope": section})
    assert str(e.value).startswith(CONFIG_FILE)


def saved_meta(tmp_path: Path) -> dict:
    """A real classification adapter's config, as `save_adapter` writes it (no training needed)."""
    model = tiny_model("bert", head="base")
    add_adapter(model, "route", AdapterConfig(bottleneck=8), labels=["billing", "orders", "tech"])
    folder = save_adapter(model, "route", tmp_path / "route")
    return json.loads((folder / CONFIG_FILE).read_text())
