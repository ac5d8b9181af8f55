"""The Hugging Face Hub without the network: pulls from a cache filled in huggingface_hub's own layout (offline,
and with the Hub unreachable), checked like uploads; pushes built as commit operations, with only
`HfApi.create_repo` / `create_commit` (the network calls) replaced."""

import io
import json
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny_model
from huggingface_hub import CommitOperationAdd, HfApi, constants, metadata_load
from share_fixtures import cache_repo, folder_files, tiny_adapter, write_events

from adapter_core import AdapterError, classification_logits, load_adapter
from adapter_core.pull import resolve_source
from adapter_core.share import HubRef, parse_ref, pull, push_adapter, push_operations


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 and a fresh HF_HOME, both read at call time."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf" / "hub"


@pytest.mark.parametrize(
    "text, ref",
    [
        ("hf://me/route", HubRef("me/route")),
        ("me/route", HubRef("me/route")),
        ("hf://me/pack/orders@v2", HubRef("me/pack", "orders", "v2")),
        ("me/route@0123abc", HubRef("me/route", None, "0123abc")),
        ("./me/route", None),
        ("/abs/path", None),
        ("plain", None),
        (42, None),
    ],
)
def test_hub_references(text, ref):
    assert parse_ref(text) == ref


def test_a_local_folder_wins_over_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me" / "route").mkdir(parents=True)
    assert parse_ref("me/route") is None and parse_ref("hf://me/route") == HubRef("me/route")
    with pytest.raises(AdapterError, match="not a Hub reference"):
        parse_ref("hf://../../etc")


def test_an_adapter_in_the_cache_pulls_and_loads_offline(tmp_path, offline, ids):
    model, folder = tiny_adapter(tmp_path / "route")
    cache_repo(offline, "me/route", {**folder_files(folder), "pytorch_model.bin": b"never read"})
    start = time.perf_counter()
    (pulled,) = pull("me/route")
    assert time.perf_counter() - start < 2 and pulled.is_relative_to(offline)
    fresh = tiny_model("bert", head="base")  # the same seed: the same base
    name = load_adapter(fresh, "hf://me/route", name="pulled")
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(
            classification_logits(fresh, name, ids, mask), classification_logits(model, "route", ids, mask)
        )


def test_a_pull_the_cache_cannot_serve_fails_at_once_offline(offline, tmp_path):
    start = time.perf_counter()
    with pytest.raises(AdapterError, match="HF_HUB_OFFLINE=1 is set, and it is not in the local Hugging Face cache"):
        pull("me/missing")
    with pytest.raises(AdapterError, match="'me/typo' is no adapter folder here, so it was read as a Hub repository"):
        load_adapter(tiny_model("bert", head="base"), "me/typo")
    assert time.perf_counter() - start < 2


def test_an_unreachable_hub_falls_back_to_the_cache_or_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    cache = tmp_path / "hf"
    _, folder = tiny_adapter(tmp_path / "route")
    cache_repo(cache, "me/route", folder_files(folder))
    start = time.perf_counter()
    assert pull("me/route", cache=cache)[0].name.startswith("c0ffee")
    with pytest.raises(AdapterError, match="the Hugging Face Hub cannot be reached, and it is not in the local"):
        pull("me/other", cache=cache)
    assert time.perf_counter() - start < 10


def test_a_pack_pulls_one_folder_per_adapter(tmp_path, offline):
    files = {}
    for name in ("router", "orders"):
        _, folder = tiny_adapter(tmp_path / name, name=name)
        files |= {f"{name}/{k}": v for k, v in folder_files(folder).items()}
    cache_repo(offline, "me/pack", {**files, "README.md": b"# pack\n"})
    assert [p.name for p in pull("me/pack")] == ["orders", "router"]
    assert resolve_source("hf://me/pack/orders").name == "orders"
    with pytest.raises(AdapterError, match="holds 2 adapters \\(a pack\\); name one: hf://me/pack/<adapter>"):
        resolve_source("hf://me/pack")


class Caps:
    max_member_bytes, max_bottleneck, max_labels = 10_000, 1024, 512


@pytest.mark.parametrize("damage", ["bottleneck", "weights", "size", "missing"])
def test_a_hostile_repo_is_refused_like_an_upload(tmp_path, offline, damage):
    _, folder = tiny_adapter(tmp_path / "route")
    files = folder_files(folder)
    meta = json.loads(files["adapter_config.json"])
    if damage == "bottleneck":
        meta["config"]["bottleneck"] = meta["bottleneck"] = 4096
    files["adapter_config.json"] = json.dumps(meta).encode()
    if damage == "weights":
        files["adapter_model.safetensors"] = files["adapter_model.safetensors"][:-4]
    if damage == "missing":
        del files["adapter_model.safetensors"]
    cache_repo(offline, "me/route", files)
    message = {
        "bottleneck": "its bottleneck is 4,096; this studio accepts at most 1,024",
        "weights": "is damaged",
        "size": "adapter_model.safetensors is over 0.0 MB",
        "missing": "adapter_model.safetensors is missing",
    }[damage]
    with pytest.raises(AdapterError, match=message) as err:
        pull("me/route", limits=Caps() if damage != "size" else type("Tiny", (Caps,), {"max_member_bytes": 10})())
    assert str(offline) not in str(err.value)


def library_folder(tmp_path):
    """An adapter as the studio's library keeps it: config, weights, the curve's events, an owner file."""
    _, folder = tiny_adapter(tmp_path / "lib" / "route", extra={"base_model": str(tmp_path / "models" / "my-bert")})
    meta = json.loads((folder / "adapter_config.json").read_text())
    meta |= {"owner": "hf:alice", "train_config": {"data": str(tmp_path / "private.csv"), "epochs": 2}}
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    (folder / ".owner").write_text("hf:alice\n")
    write_events(folder / "metrics.jsonl")
    return folder


def test_a_push_sends_the_weights_a_clean_config_the_card_and_the_curve(tmp_path):
    folder = library_folder(tmp_path)
    ops = push_operations(folder, "alice/route")
    assert all(isinstance(op, CommitOperationAdd) for op in ops)
    files = {op.path_in_repo: op for op in ops}
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors", "README.md", "curve.png"}
    assert Path(files["adapter_model.safetensors"].path_or_fileobj) == folder / "adapter_model.safetensors"
    content = {
        k: op.path_or_fileobj.getvalue() for k, op in files.items() if isinstance(op.path_or_fileobj, io.BytesIO)
    }
    config = json.loads(content["adapter_config.json"])
    assert "owner" not in config and config["train_config"]["data"] is None
    assert config["base_model"] == "my-bert" and str(tmp_path) not in content["adapter_config.json"].decode()
    readme = content["README.md"].decode()
    assert 'load_adapter(base.model, "hf://alice/route")' in readme and "pull alice/route" in readme
    assert str(tmp_path) not in readme and "private.csv" not in readme and "hf:alice" not in readme
    (tmp_path / "card.md").write_bytes(content["README.md"])
    assert metadata_load(tmp_path / "card.md")["library_name"] == "adapter-studio"
    assert content["curve.png"][:4] == b"\x89PNG"


def test_push_adapter_makes_one_commit_with_the_callers_token(tmp_path, monkeypatch):
    folder = library_folder(tmp_path)
    calls = []
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("repo", self.token, repo_id, kw))
    )

    def create_commit(self, repo_id, operations, commit_message):
        calls.append(("commit", self.token, repo_id, sorted(op.path_in_repo for op in operations)))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    url = push_adapter(folder, "alice/route", token="hf_visitor", private=True)
    assert url.endswith("alice/route/commit/1")
    assert calls[0] == ("repo", "hf_visitor", "alice/route", {"private": True, "exist_ok": True})
    assert calls[1][:3] == ("commit", "hf_visitor", "alice/route") and "README.md" in calls[1][3]
    with pytest.raises(AdapterError, match="not a repository id"):
        push_adapter(folder, "alice/route@main", token="x")


def test_a_refused_push_says_why_in_plain_words(tmp_path, monkeypatch):
    import httpx2  # huggingface_hub's own HTTP client
    from huggingface_hub.errors import HfHubHTTPError

    folder = library_folder(tmp_path)

    def refuse(self, repo_id, **kw):
        request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
        raise HfHubHTTPError("401 Unauthorized", response=httpx2.Response(401, request=request))

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(AdapterError, match="This token cannot write to 'alice/route' \\(HTTP 401\\)"):
        push_adapter(folder, "alice/route", token="hf_read_only")


@pytest.mark.parametrize("status, message", [(404, "No repository 'me/route'"), (503, None), (401, "No repository")])
def test_a_refusal_is_reported_and_an_outage_falls_back_to_the_cache(tmp_path, monkeypatch, status, message):
    """The Hub's answers, as huggingface_hub raises them from a dry run: a refusal is the answer; a
    server error is an outage, and the cache serves what it has."""
    import httpx2
    from huggingface_hub import _snapshot_download
    from huggingface_hub.errors import DryRunError, HfHubHTTPError, RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _, folder = tiny_adapter(tmp_path / "route")
    cache_repo(tmp_path / "hf", "me/route", folder_files(folder))
    real = _snapshot_download.snapshot_download

    def answer(*args, dry_run=False, **kwargs):
        if not dry_run:
            return real(*args, **kwargs)
        response = httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/models/me/route"))
        error = (RepositoryNotFoundError if status != 503 else HfHubHTTPError)("no", response=response)
        raise DryRunError("cannot access") from error

    monkeypatch.setattr("huggingface_hub.snapshot_download", answer)
    if message:
        with pytest.raises(AdapterError, match=message):
            pull("me/route", cache=tmp_path / "hf")
    else:
        assert pull("me/route", cache=tmp_path / "hf")[0].is_dir()
