"""Sharing in the studio: the service's checks (public mode: push only with the visitor's own token and only
their own adapter; a pull is checked like an upload and counts against their quota), the Library tab's
handlers, and the wiring over HTTP. The Hub is replaced at `snapshot_download` and `HfApi` (the network)."""

import fnmatch
import json
import zipfile
from pathlib import Path

import huggingface_hub
import pytest
from gradio_client import Client
from huggingface_hub import HfApi
from huggingface_hub.file_download import DryRunFileInfo
from share_fixtures import cache_repo, folder_files, tiny_adapter, write_events

from adapter_core import AdapterError
from studio import share_view as sv
from studio.policy import Policy
from studio.service import Studio


@pytest.fixture
def public(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_server_secret")  # a Space's own token: never used for a visitor
    studio = Studio(tmp_path / "home", Policy(public=True, max_adapters_per_owner=3))
    for name, owner in (("route", "hf:alice"), ("shared", None), ("bobs", "hf:bob")):
        extra = {
            "base_model": str(tmp_path / "bert"),
            "train_config": {"data": str(tmp_path / "mine.csv"), "epochs": 2},
        }
        _, folder = tiny_adapter(tmp_path / "made" / name, name=name, extra=extra)
        write_events(folder / "metrics.jsonl")
        studio.library.publish(folder, name, owner=owner)
    return studio


@pytest.fixture
def commits(monkeypatch):
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("repo", self.token, repo_id)))

    def create_commit(self, repo_id, operations, commit_message):
        calls.append(("commit", self.token, repo_id, sorted(op.path_in_repo for op in operations)))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


def test_public_push_uses_only_the_visitors_token_and_their_own_adapter(public, commits):
    with pytest.raises(AdapterError, match="Sign in with Hugging Face to push"):
        sv.push(public, "route", "alice/route", True, None, "hf:alice")
    with pytest.raises(AdapterError, match="shared example, not yours"):
        sv.push(public, "shared", "alice/shared", True, "hf_alice", "hf:alice")
    with pytest.raises(AdapterError, match="No adapter named 'bobs'"):
        sv.push(public, "bobs", "alice/bobs", True, "hf_alice", "hf:alice")
    assert commits == []
    message = sv.push(public, "route", "alice/route", True, "hf_alice", "hf:alice")
    assert "Pushed route to [alice/route](https://huggingface.co/alice/route)" in message
    assert commits[0] == ("repo", "hf_alice", "alice/route")
    assert commits[1][1] == "hf_alice" and ".owner" not in commits[1][3] and "metrics.jsonl" not in commits[1][3]
    with pytest.raises(AdapterError, match="as owner/name"):
        sv.push(public, "route", "../../etc", True, "hf_alice", "hf:alice")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub behind `snapshot_download`: repos of files, served into whatever cache the caller names."""
    repos, seen = {}, []

    def snapshot_download(repo_id, revision=None, cache_dir=None, token=None, allow_patterns=None, **kw):
        seen.append({"repo": repo_id, "cache": cache_dir, "token": token, **kw})
        files = {p: b for p, b in repos[repo_id].items() if any(fnmatch.fnmatch(p, pat) for pat in allow_patterns)}
        if kw.get("dry_run"):
            return [DryRunFileInfo("c0ffee" * 6 + "beef", len(b), p, "", False, True) for p, b in files.items()]
        return str(cache_repo(Path(cache_dir), repo_id, files))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # local mode pulls into the machine's cache: a test's own
    return repos, seen


def test_public_pull_is_checked_owned_and_counted(public, hub, tmp_path):
    repos, seen = hub
    _, folder = tiny_adapter(tmp_path / "theirs", name="orders")
    repos["carol/orders"] = {**folder_files(folder), "model.bin": b"pickle"}
    name, message = sv.pull(public, "hf://carol/orders", None, "hf:alice")
    assert name == "orders" and "checked like an upload" in message
    entry = public.library.get("orders", owner="hf:alice")
    assert entry.owner == "hf:alice" and {p.name for p in entry.path.iterdir()} >= {"adapter_model.safetensors"}
    assert all(s["token"] is False for s in seen)  # no visitor token: no token at all, not the server's
    assert seen[0]["cache"] and not Path(seen[0]["cache"]).exists()  # a private cache, deleted after
    with pytest.raises(AdapterError, match="No adapter named 'orders'"):
        public.library.get("orders", owner="hf:bob")
    name, _ = sv.pull(public, "carol/orders", "hf_alice", "hf:alice")  # a second copy: the quota's third
    assert name == "orders-2" and seen[-1]["token"] == "hf_alice"
    with pytest.raises(AdapterError, match="Your library is full"):
        sv.pull(public, "carol/orders", None, "hf:alice")


def test_a_hostile_pull_is_refused_before_download_or_like_an_upload(public, hub, tmp_path):
    repos, seen = hub
    _, folder = tiny_adapter(tmp_path / "theirs", name="big")
    repos["eve/big"] = {
        **folder_files(folder),
        "adapter_model.safetensors": b"\0" * (public.policy.max_member_bytes + 1),
    }
    with pytest.raises(AdapterError, match="the limit is 64.0 MB"):
        sv.pull(public, "eve/big", None, "hf:alice")
    assert [s.get("dry_run") for s in seen] == [True]  # refused from the sizes: nothing downloaded
    meta = json.loads(folder_files(folder)["adapter_config.json"])
    meta["labels"] = [f"l{i}" for i in range(600)]
    repos["eve/labels"] = {**folder_files(folder), "adapter_config.json": json.dumps(meta).encode()}
    with pytest.raises(AdapterError) as err:
        sv.pull(public, "eve/labels", None, "hf:alice")
    assert "it has 600 labels; this studio accepts at most 512" in str(err.value) and str(public.home) not in str(
        err.value
    )


def test_export_pack_and_card_are_the_callers(public, tmp_path):
    path, message = sv.export_adapterhub(public, "route", "hf:alice")
    assert "use_safetensors=True" in message and "without its head" not in message
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"route-adapterhub/adapter_config.json", "route-adapterhub/model_head.safetensors"} <= names
        assert str(public.home) not in z.read("route-adapterhub/adapter_config.json").decode()
    _, folder = tiny_adapter(tmp_path / "made" / "meanie", name="meanie", pooling="mean")
    public.library.publish(folder, "meanie", owner="hf:alice")
    path, message = sv.export_adapterhub(public, "meanie", "hf:alice")  # their head reads the first token only
    assert "The adapter alone, without its head: pooling 'mean'" in message
    with zipfile.ZipFile(path) as z:
        assert not any(n.endswith("head_config.json") for n in z.namelist())
    assert "--without-head" in sv.card_preview(public, "meanie", "hf:alice")
    with pytest.raises(AdapterError, match="No adapter named 'bobs'"):
        sv.export_adapterhub(public, "bobs", "hf:alice")
    with pytest.raises(AdapterError, match="No instruction adapter matches"):
        sv.pack(public, "route", "hf:alice")
    preview = sv.card_preview(public, "route", "hf:alice")
    assert preview.startswith("# route") and "![" not in preview and str(public.home) not in preview
    assert "| training rows | 90 |" in preview and "| epochs | 2 |" in preview and "mine.csv" not in preview


def test_the_library_tab_wires_push_pull_and_export(tmp_path, hub, commits):
    from helpers import free_port

    from studio.ui import build_app, launch

    repos, _ = hub
    studio = Studio(tmp_path / "home", Policy.local())
    _, folder = tiny_adapter(tmp_path / "made" / "route", name="route")
    studio.library.publish(folder, "route")
    repos["carol/orders"] = folder_files(folder)
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        download, message = client.predict("route", api_name="/export_adapterhub")
        assert Path(download["value"] if isinstance(download, dict) else download).suffix == ".zip"
        assert "Exported route in AdapterHub" in message
        message = client.predict("route", "me/route", False, api_name="/push_adapter")
        assert "Pushed route" in message and commits[0][2] == "me/route"
        message, picked = client.predict("carol/orders", api_name="/pull_adapter")  # State is not in the API
        assert "Pulled carol/orders" in message and picked["value"] == "orders" in studio.library.names()
        _, dept = tiny_adapter(tmp_path / "made" / "billing", name="billing", task="instruction")
        studio.library.publish(dept, "billing")
        message = client.predict("route", "me/desk", False, api_name="/push_pack")
        assert "Pushed the hub pack of route" in message and commits[-1][2] == "me/desk"
        assert {"route/adapter_config.json", "billing/adapter_model.safetensors"} <= set(commits[-1][3])
    finally:
        demo.close()


def test_a_pack_holds_only_the_callers_departments(public, tmp_path):
    for name, owner in (("orders", "hf:alice"), ("billing", "hf:bob")):
        _, folder = tiny_adapter(tmp_path / "made" / name, name=name, task="instruction")
        public.library.publish(folder, name, owner=owner)
    with zipfile.ZipFile(sv.pack(public, "route", "hf:alice")) as z:
        folders = {n.split("/")[1] for n in z.namelist() if n.count("/") >= 2}
        card = z.read("route-pack/README.md").decode()
    assert folders == {"route", "orders"} and "| orders | orders |" in card and "| billing | fallback |" in card
    assert str(public.home) not in card


def test_a_whole_pack_is_pulled_all_or_nothing_within_the_quota(public, hub, tmp_path):
    repos, seen = hub
    _, router = tiny_adapter(tmp_path / "made" / "desk", name="desk", labels=("orders", "billing"))
    _, dept = tiny_adapter(tmp_path / "made" / "orders", name="orders", task="instruction")
    pack = {f"desk/{k}": v for k, v in folder_files(router).items()}
    pack |= {f"orders/{k}": v for k, v in folder_files(dept).items()} | {"README.md": b"# Hub pack"}
    repos["carol/hub"] = pack
    repos["carol/big"] = {**pack, **{f"billing/{k}": v for k, v in folder_files(dept).items()}}
    with pytest.raises(AdapterError, match="carol/big holds 3 adapters; your library has room for 2 more"):
        sv.pull(public, "carol/big", None, "hf:alice")
    assert [s.get("dry_run") for s in seen] == [True]  # refused from the Hub's listing: nothing downloaded
    assert public.library.names(owner="hf:alice") == ["route", "shared"]  # nothing of it kept
    name, message = sv.pull(public, "carol/hub", None, "hf:alice")
    assert name == "desk" and "Pulled the pack carol/hub into your library: desk, orders" in message
    assert public.library.get("orders", owner="hf:alice").task == "instruction"
    assert public.library.get("desk", owner="hf:alice").owner == "hf:alice"


def test_a_pack_is_pushed_as_one_commit_of_the_callers_adapters(public, commits, tmp_path):
    _, folder = tiny_adapter(tmp_path / "made" / "orders", name="orders", task="instruction")
    public.library.publish(folder, "orders", owner="hf:alice")
    with pytest.raises(AdapterError, match="Sign in with Hugging Face to push"):
        sv.push_pack(public, "route", "alice/desk", True, None, "hf:alice")
    message = sv.push_pack(public, "route", "alice/desk", True, "hf_alice", "hf:alice")
    assert "Pushed the hub pack of route to [alice/desk]" in message
    (_, token, repo, files) = commits[-1]
    assert token == "hf_alice" and repo == "alice/desk"
    assert {"README.md", "route/adapter_model.safetensors", "orders/adapter_config.json"} <= set(files)
    assert not any(f.endswith((".owner", "metrics.jsonl")) for f in files)
    public.library.publish(folder, "billing", owner=None)  # a shared example as a department: not theirs to push
    before = len(commits)
    with pytest.raises(AdapterError, match="'billing' is a shared example, not yours"):
        sv.push_pack(public, "route", "alice/desk", True, "hf_alice", "hf:alice")
    assert len(commits) == before
