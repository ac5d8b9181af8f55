"""The out-of-scope threshold: its quantile rule, the metadata it is saved in, and training writing it."""

import json
from pathlib import Path

import pytest
from helpers import ROUTING, tiny_model
from transformers import AutoTokenizer

import adapter_core.engine.setup as engine
from adapter_core import AdapterConfig, AdapterError, add_adapter, classify, save_adapter
from adapter_core.catalog import CATALOG, Base, embedded_path
from adapter_core.engine.batches import tokenize
from adapter_core.engine.calibration import IN_SCOPE_RECALL, calibrate, confidences
from adapter_core.engine.data import load_data
from adapter_core.engine.metrics import evaluate
from adapter_core.engine.train import TrainConfig, train
from adapter_core.io import CONFIG_FILE, read_adapter_config
from adapter_core.placement import model_family
from adapter_core.routing import saved_threshold
from adapter_core.schema import validate_meta
from adapter_core.state import ensure_state


def test_threshold_keeps_the_target_share_of_correct_rows():
    conf = [i / 100 for i in range(1, 101)]
    out = calibrate(conf, [True] * 100)
    assert IN_SCOPE_RECALL == 0.95 and out["in_scope_recall"] == 0.95
    assert 0.05 <= out["threshold"] <= 0.06
    assert sum(c >= out["threshold"] for c in conf) >= 95  # at least the share asked for stays in scope
    assert out["validation_rows"] == 100 and "95%" in out["method"]
    assert calibrate(conf, [True] * 100, 0.5)["threshold"] == 0.51
    assert calibrate(conf, [True] * 100, 1.0)["threshold"] == 0.01


def test_only_correct_rows_count_unless_none_is():
    conf = [0.9, 0.8, 0.2, 0.1]
    assert calibrate(conf, [True, True, False, False], 1.0)["threshold"] == 0.8  # the wrong rows are ignored
    fallback = calibrate(conf, [False] * 4, 1.0)
    assert fallback["threshold"] == 0.1 and fallback["validation_rows"] == 4
    assert "none was classified correctly" in fallback["method"]


def test_threshold_is_rounded_down_so_the_boundary_row_stays_in_scope():
    out = calibrate([0.123456, 0.99999], [True, True], 1.0)
    assert out["threshold"] == 0.1234
    assert calibrate([0.999999], [True])["threshold"] == 0.9999


@pytest.mark.parametrize(
    "args, message",
    [(([], []), "No validation rows"), (([0.5], [True, False]), "one per row"), (([0.5], [True], 0), "share")],
)
def test_calibrate_refuses_what_it_cannot_use(args, message):
    with pytest.raises(AdapterError, match=message):
        calibrate(*args)


def test_saved_threshold_reads_the_metadata_or_gives_none():
    assert saved_threshold({"out_of_scope": {"threshold": 0.42}}) == 0.42
    assert saved_threshold({}) is None
    assert saved_threshold({"out_of_scope": None}) is None
    assert saved_threshold({"out_of_scope": {"threshold": "0.4"}}) is None


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
def test_training_saves_a_valid_threshold_in_the_adapter_config(tiny_base, tmp_path, stop):
    config = TrainConfig(data=ROUTING, name="route", max_steps=3, batch_size=32, max_length=48)
    events = []
    result = train(config, tmp_path, events.append, should_stop=lambda: stop)
    assert result.status == ("stopped" if stop else "completed")
    meta = json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())
    section = meta["out_of_scope"]
    assert 0 <= section["threshold"] <= 1 and saved_threshold(meta) == section["threshold"]
    assert section["in_scope_recall"] == IN_SCOPE_RECALL and section["validation_rows"] == 48  # 10% of 480
    assert meta["training"]["status"] == result.status
    validate_meta(meta)
    assert read_adapter_config(tmp_path / "adapter") == meta
    done = events[-1]
    assert done.kind == "done" and done.info["out_of_scope_threshold"] == section["threshold"]


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
