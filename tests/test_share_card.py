"""Model cards: every saved adapter folder gets README.md (front matter the Hub parses) and curve.png, with
the task, labels, settings, size, training, metrics and how to load it; no server path, no data file name."""

import json
import logging
import math
import re

from huggingface_hub import ModelCard, metadata_load
from share_fixtures import tiny_adapter, write_events

import adapter_core.card as card
from adapter_core.io import read_safetensors_header
from adapter_core.share import public_meta


def run_adapter(tmp_path, labels=("billing", "orders", "tech")):
    """An adapter saved as training saves it: in a run folder whose metrics.jsonl holds the curve."""
    run = tmp_path / "home" / "runs" / "route-run"
    run.mkdir(parents=True)
    write_events(run / "metrics.jsonl")
    extra = {
        "base_model": "minilm",
        "train_config": {
            "data": str(tmp_path / "secret_orders.csv"),
            "val_data": None,
            "epochs": 3,
            "lr": 0.002,
            "seed": 7,
        },
        "training": {
            "status": "completed",
            "step": 20,
            "metrics": {"accuracy": 0.8, "val_loss": 0.05},
            "train_seconds": 4.5,
        },
    }
    return tiny_adapter(run / "adapter", labels=labels, extra=extra)[1]


def test_a_saved_adapter_has_a_card_the_hub_parses(tmp_path):
    folder = run_adapter(tmp_path)
    assert {p.name for p in folder.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "curve.png",
    }
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "adapter-studio" and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["license"] == "apache-2.0"  # the base's, from the card its package ships
    assert {"text-classification", "houlsby", "bottleneck-adapter"} <= set(meta["tags"])
    assert ModelCard.load(folder / "README.md").data.pipeline_tag == "text-classification"
    assert (folder / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_card_says_what_the_adapter_is_and_how_it_was_trained(tmp_path):
    folder = run_adapter(tmp_path)
    text = (folder / "README.md").read_text()
    params = sum(math.prod(s) for _, s in read_safetensors_header(folder / "adapter_model.safetensors").values())
    for part in (
        "Text classification into 3 labels, in index order: billing, orders, tech",
        "| bottleneck | 4 |",
        "| pooling | cls |",
        f"| trainable parameters | {params:,} |",
        "| epochs | 3 |",
        "| training rows | 90 |",
        "| validation rows | 10 |",
        "| accuracy | 0.8000 |",
        "| validation loss | 0.0500 |",  # metrics by their plain names, not the engine's keys
        "![Training curve](curve.png)",
        'base = load_base("minilm")',
        'load_adapter(base.model, "path/to/this/folder")',
        "--format adapterhub",
        'model.load_adapter("route-adapterhub", use_safetensors=True',
    ):
        assert part in text, part


def test_the_card_names_no_server_path_and_no_data_file(tmp_path):
    folder = run_adapter(tmp_path)
    text = (folder / "README.md").read_text()
    assert str(tmp_path) not in text and "secret_orders" not in text and "route-run" not in text
    published = public_meta(json.loads((folder / "adapter_config.json").read_text()))
    assert published["train_config"]["data"] is None and str(tmp_path) not in json.dumps(published)


def test_labels_cannot_inject_markup(tmp_path):
    folder = run_adapter(tmp_path, labels=("<img src=x onerror=alert(1)>", "[click](http://evil)", "ok"))
    text = (folder / "README.md").read_text()
    # Every < [ ] of a label is backslash-escaped: Markdown shows them as text, never as a tag or a link.
    assert "\\<img src=x onerror=alert(1)\\>" in text and "\\[click\\](http://evil)" in text
    assert not re.search(r"(?<!\\)<img|(?<!\\)\](?=\(http://evil)", text)


def test_an_uploaded_adapter_gets_a_card_without_a_curve(tmp_path):
    _, folder = tiny_adapter(tmp_path / "plain", task="instruction")
    text = (folder / "README.md").read_text()
    assert "No training record came with this adapter" in text and not (folder / "curve.png").exists()
    assert "generate(base.model" in text and metadata_load(folder / "README.md")["pipeline_tag"] == "text-generation"


def test_a_card_that_fails_never_costs_the_weights(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no card today")

    monkeypatch.setattr(card, "model_card", broken)
    with caplog.at_level(logging.WARNING, logger="adapter_core"):
        _, folder = tiny_adapter(tmp_path / "a")
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "README.md").exists()
    assert "could not be written" in caplog.text


def test_a_checkpoint_of_a_running_run_gets_its_card_and_the_last_save_its_curve(tmp_path):
    folder = run_adapter(tmp_path)
    meta = json.loads((folder / "adapter_config.json").read_text())
    running = {**meta, "training": {**meta["training"], "status": "running"}}
    card.write_card(folder, running, events=card.read_curve(folder))
    (folder / "curve.png").unlink()
    card.write_card(folder, running, events=card.read_curve(folder))
    assert not (folder / "curve.png").exists() and "![Training curve]" not in (folder / "README.md").read_text()
    card.write_card(folder, meta, events=card.read_curve(folder))
    assert (folder / "curve.png").is_file() and "![Training curve]" in (folder / "README.md").read_text()
