"""The sharing commands (push, pull, export, pack) and `serve --library hf://...`, run in-process."""

import json

import pytest
import torch
from fastapi.testclient import TestClient
from share_fixtures import cache_repo, folder_files, tiny_adapter, write_events
from test_share_adapterhub import HOULSBY, write_theirs

from adapter_core import (
    AdapterConfig,
    AdapterError,
    add_adapter,
    classification_logits,
    load_adapter,
    load_base,
    save_adapter,
)
from adapter_core.cli import main
from adapter_core.serve.app import build_server
from adapter_core.share import pack


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf" / "hub"


@pytest.fixture
def library(tmp_path):
    """A router whose labels name two departments (orders -> orders-v2, billing), and one stray adapter."""
    lib = tmp_path / "lib"
    tiny_adapter(lib / "router", name="router", labels=("orders", "billing", "other"))
    for name in ("orders-v2", "billing", "notes"):
        tiny_adapter(lib / name, name=name, task="instruction")
    write_events(lib / "router" / "metrics.jsonl")
    return lib


def test_pack_holds_the_router_its_departments_and_the_command_to_serve_them(tmp_path, library, capsys):
    assert main(["pack", "--router", "router", "--library", str(library), "--out", str(tmp_path / "hub-pack")]) == 0
    out = tmp_path / "hub-pack"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "billing", "orders-v2", "router"]
    assert {p.name for p in (out / "router").iterdir()} == {
        "adapter_config.json", "adapter_model.safetensors", "README.md", "curve.png",
    }  # fmt: skip
    card = (out / "README.md").read_text()
    assert "| orders | orders-v2 |" in card and "| billing | billing |" in card and "| other | fallback |" in card
    assert "python -m adapter_core serve --library hub-pack --router router" in card
    assert str(tmp_path) not in card and card in capsys.readouterr().out
    pushed = pack("router", library, tmp_path / "p2", repo_id="me/support-hub", fallback="A person will reply.")
    text = (pushed / "README.md").read_text()
    assert "serve --library hf://me/support-hub --router router --fallback 'A person will reply.'" in text
    assert 'load_adapter(base.model, "hf://me/support-hub/router")' in (pushed / "router" / "README.md").read_text()


def test_a_pack_pulled_from_the_hub_serves_as_written_in_its_card(tmp_path, library, offline):
    out = pack("router", library, tmp_path / "pack", repo_id="me/support-hub")
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    cache_repo(offline, "me/support-hub", files)
    with pytest.raises(AdapterError, match="outside the catalog"):  # the pack's tiny BERT is no catalog model
        build_server("hf://me/support-hub", router="router")
    app = build_server("hf://me/support-hub", router="router", allow_any_base=True)
    models = {m["id"] for m in TestClient(app).get("/v1/models").json()["data"]}
    assert models >= {"router", "orders-v2", "billing", "auto"} and "notes" not in models
    cache_repo(offline, "me/one", folder_files(library / "notes"))
    with pytest.raises(AdapterError, match="is one adapter, not a pack"):
        build_server("hf://me/one", allow_any_base=True)


def test_pull_copies_only_the_adapter_files(tmp_path, offline, capsys):
    _, folder = tiny_adapter(tmp_path / "route")
    cache_repo(offline, "me/route", {**folder_files(folder), "evil.py": b"import os"})
    assert main(["pull", "me/route", "--out", str(tmp_path / "lib" / "route")]) == 0
    assert {p.name for p in (tmp_path / "lib" / "route").iterdir()} == set(folder_files(folder))
    assert main(["pull", "me/missing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Cannot pull me/missing: HF_HUB_OFFLINE=1 is set") and len(err.splitlines()) == 1


def test_push_dry_run_lists_the_files_and_prints_the_card(tmp_path, capsys):
    _, folder = tiny_adapter(tmp_path / "run" / "adapter", extra={"base_model": "minilm"})
    write_events(tmp_path / "run" / "metrics.jsonl")
    assert (
        main(["push", "--adapter", str(tmp_path / "run"), "--repo", "me/route", "--dry-run", "--license", "mit"]) == 0
    )
    out = capsys.readouterr().out
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "curve.png"):
        assert f"{name}\t" in out
    assert "license: mit" in out and 'load_adapter(base.model, "hf://me/route")' in out


def test_export_both_ways_on_minilm(tmp_path, capsys):
    """An AdapterHub folder for the real MiniLM: the CLI predicts with it directly, and converts it."""
    import adapter_core.adapterhub_format as ah

    theirs = tmp_path / "theirs"
    write_theirs_minilm(theirs)
    assert main(["predict", "--adapter", str(theirs), "--text", "Where is my parcel?", "--json"]) == 0
    label = json.loads(capsys.readouterr().out)[0]["label"]
    assert main(["export", "--adapter", str(theirs), "--format", "adapter_core", "--out", str(tmp_path / "ours")]) == 0
    assert main(["export", "--adapter", str(tmp_path / "ours"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / ah.ADAPTER_WEIGHTS).is_file() and (tmp_path / "ours" / "README.md").is_file()
    base = load_base("minilm")
    x = base.tokenizer(["Where is my parcel?", "I was charged twice"], padding=True, return_tensors="pt")
    logits = []
    for source in (theirs, tmp_path / "ours", tmp_path / "again"):
        name = load_adapter(base.model, source, name=source.name)
        with torch.no_grad():
            logits.append(classification_logits(base.model, name, x["input_ids"], x["attention_mask"]))
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    assert label in ("a", "b", "c")


def test_export_loads_the_base_the_adapter_names_not_the_trainers_folder(tmp_path):
    """An adapter trained elsewhere keeps that machine's folder as the model's `name_or_path`; its
    `base_model` ("minilm") is what loads here, as everywhere else that reads an adapter."""
    base = load_base("minilm")
    add_adapter(base.model, "moved", AdapterConfig(bottleneck=4), task="classification", labels=["a", "b"])
    save_adapter(base.model, "moved", tmp_path / "moved", extra={"base_model": "minilm"})
    config = tmp_path / "moved" / "adapter_config.json"
    meta = json.loads(config.read_text())
    meta["base"]["name_or_path"] = "/home/someone/models/all-MiniLM-L6-v2"  # not on this machine
    config.write_text(json.dumps(meta))
    assert (
        main(
            ["export", "--adapter", str(tmp_path / "moved"), "--format", "adapter_core", "--out", str(tmp_path / "out")]
        )
        == 0
    )
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["base_model"] == "minilm"


def write_theirs_minilm(folder):
    import test_share_adapterhub as t

    from adapter_core.catalog import CATALOG, embedded_path

    hidden, layers = t.HIDDEN, t.LAYERS
    t.HIDDEN, t.LAYERS = 384, 6
    try:
        write_theirs(folder, {**HOULSBY, "reduction_factor": 48}, head_layers=2)
    finally:
        t.HIDDEN, t.LAYERS = hidden, layers
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["model_name"] = str(embedded_path(CATALOG["minilm"]))  # where their side loaded the base from
    (folder / "adapter_config.json").write_text(json.dumps(cfg))


def test_predict_takes_a_hub_reference(tmp_path, offline, capsys):
    """The CLI's adapter commands load `hf://owner/repo` as they load a folder (here from the cache)."""
    from adapter_core import AdapterConfig, adapter_parameters, add_adapter, save_adapter

    base = load_base("minilm")
    add_adapter(base.model, "route", AdapterConfig(bottleneck=4), labels=["billing", "orders"])
    with torch.no_grad():
        for p in adapter_parameters(base.model, "route").values():
            p.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    folder = save_adapter(base.model, "route", tmp_path / "route", extra={"base_model": "minilm"})
    cache_repo(offline, "me/route", folder_files(folder))
    for adapter in ("hf://me/route", str(folder)):
        assert main(["predict", "--adapter", adapter, "--text", "Where is my parcel?", "--json"]) == 0
    hub, local = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())
    assert hub == local
