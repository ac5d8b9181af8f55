"""The Data tab's Hub source through the studio's own functions (and once over HTTP): a dataset read from
a Hugging Face cache filled by hand in huggingface_hub's layout, the Hub's answers mocked only where a
test is online (test_hub_data's FakeHub)."""

import json
import time
from pathlib import Path

import pytest
from helpers import free_port
from share_fixtures import cache_repo
from test_hub_data import COMMIT, LABELS, WORDS, FakeHub, card, parquet, readme, tickets

from adapter_core import AdapterError
from studio import data_view as dv
from studio import hub_view as hv
from studio import quotas
from studio import train_view as h
from studio.policy import Policy
from studio.service import Studio
from studio.settings import train_config

OWNER = "hf:alice"


def test_a_cached_dataset_loads_offline_as_a_data_file_with_its_validation_split(offline, tmp_path):
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    studio = Studio(tmp_path / "home")
    found = hv.hub_lookup(studio, "me/tickets")
    assert found["configs"] == ["default", "chat"] and list(found["splits"]) == ["train", "validation", "test"]
    assert all(isinstance(n, int) and n > 0 for n in found["splits"].values())
    source = hv.hub_source(studio, "me/tickets", split="train")
    assert source["hub"] == {
        "dataset": f"hf://datasets/me/tickets@{COMMIT}",
        "config": "default",
        "split": "train",
        "label": "me/tickets (default) train",
        "validation": "validation",
    }
    info = dv.inspect_data(source["path"], "classification")  # what the Data tab shows of a file
    assert info["mapping"] == {"text": "text", "label": "label"} and info["labels"] == LABELS
    assert "30 of 30 rows used" in info["summary"] and info["label_chart"] is not None
    config = train_config("minilm", {**source, "ready": True}, "classification", {}, "", {})
    assert config.val_data == source["val_path"] and config.name.startswith("tickets-train-r")
    assert "me/tickets (default) train" in hv.hub_note(source) and COMMIT[:12] in hv.hub_note(source)
    from studio.tabs.wizard import _source  # a reload restores it from the browser's reference, from the cache

    ref = {"hub": source["hub"]["dataset"], "config": "default", "split": "train"}
    restored = _source(studio, ref, None)
    assert restored["path"] == source["path"] and restored["ref"] == ref and restored["val_path"]
    assert _source(studio, {**ref, "hub": "hf://datasets/me/absent"}, None) is None
    chat = hv.hub_source(studio, "hf://datasets/me/tickets", config="chat")
    assert "val_path" not in chat and dv.inspect_data(chat["path"], "instruction")["rows"] == 3


def test_a_dataset_with_several_configurations_and_no_default_lists_them_and_names_the_box(offline, tmp_path):
    two = {"configs": [{"config_name": n, "data_files": f"{n}.csv"} for n in ("faq", "chat")]}
    files = {"README.md": readme(two), "faq.csv": b"text,label\nhi,a\nyo,b\n", "chat.csv": b"prompt,completion\nx,y\n"}
    cache_repo(offline, "me/two", files, commit=COMMIT, repo_type="dataset")
    studio = Studio(tmp_path / "home")
    found = hv.hub_lookup(studio, "me/two")  # the look-up shows the first, to fill the boxes
    assert found["configs"] == ["faq", "chat"] and found["config"] == "faq" and list(found["splits"]) == ["train"]
    with pytest.raises(AdapterError, match=r"2 configurations \(faq, chat\); pick one \(the Configuration box\)\.$"):
        hv.hub_source(studio, "me/two")
    assert hv.hub_source(studio, "me/two", config="chat")["name"] == "two-train.jsonl"


def test_a_dataset_missing_from_the_cache_is_said_at_once_offline(offline, tmp_path):
    studio = Studio(tmp_path / "home")
    for call in (hv.hub_lookup, hv.hub_source):
        with pytest.raises(AdapterError, match="HF_HUB_OFFLINE=1 is set, and it is not in the local Hugging Face"):
            call(studio, "me/absent")
    assert not (tmp_path / "home" / "hub-data").exists()


def test_public_mode_refuses_a_dataset_over_the_limit_before_anything_is_fetched(hf_home, monkeypatch, tmp_path):
    hub = FakeHub(monkeypatch, hf_home, tickets(card({"train": 900_000, "validation": 1, "test": 1})))
    studio = Studio(tmp_path / "home", Policy(public=True, max_data_bytes=2**19))
    with pytest.raises(AdapterError, match=r"declares \(its card's dataset_info\) 0.9 MB; this studio takes at most"):
        hv.hub_source(studio, "me/tickets", owner=OWNER)
    assert hub.downloads == [] and not hf_home.exists() and hub.tokens == [False]  # never the server's token
    with pytest.raises(AdapterError, match="no visitor identity"):
        hv.hub_source(studio, "me/tickets")
    for call in (hv.hub_lookup, hv.hub_source):  # no sign-in: the Hub is not asked
        with pytest.raises(AdapterError, match="Loading a dataset from the Hub needs a Hugging Face sign-in"):
            call(studio, "me/tickets", owner="anon:x")
    assert hub.calls == ["me/tickets"]


def test_public_mode_loads_a_small_dataset_and_refuses_one_over_the_rows(hf_home, monkeypatch, tmp_path):
    hub = FakeHub(monkeypatch, hf_home, tickets())
    studio = Studio(tmp_path / "home", Policy(public=True))
    source = hv.hub_source(studio, "me/tickets", owner=OWNER)
    assert hub.tokens == [False] and len(hub.downloads) == 1
    assert studio.data_file(source["path"]) == studio.data_file(source["val_path"]).parent / "tickets-train.jsonl"
    with pytest.raises(AdapterError, match="Data files come only from your uploads"):
        studio.data_file(tmp_path / "elsewhere.csv")
    small = Studio(tmp_path / "home2", Policy(public=True, max_data_rows=20))
    with pytest.raises(AdapterError, match="has 30 rows; this studio reads at most 20"):
        hv.hub_source(small, "me/tickets", owner=OWNER)


def test_a_small_parquet_of_a_million_rows_is_refused_from_its_footer_before_it_is_read(offline, tmp_path, monkeypatch):
    """Parquet compresses repeated rows to almost nothing: the bytes limit passes a file of a million rows,
    which `datasets` would build whole (4.5 GB of memory for 10 million). Its footer says its rows."""
    import io

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    bomb = io.BytesIO()
    pq.write_table(pa.table({"text": ["refund please"] * 1_000_000, "label": ["billing"] * 1_000_000}), bomb)
    assert len(bomb.getvalue()) < 64 * 1024
    cache_repo(offline, "eve/bomb", {"train.parquet": bomb.getvalue()}, commit=COMMIT, repo_type="dataset")
    built = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: built.append(a) or pytest.fail("it was read"))
    studio = Studio(tmp_path / "home", Policy(public=True))
    with pytest.raises(AdapterError, match="eve/bomb .*train has 1,000,000 rows; this studio reads at most 20,000"):
        hv.hub_source(studio, "eve/bomb", owner=OWNER)
    assert built == []


def test_a_visitors_loads_never_remove_a_split_another_visitor_trains_on(offline, tmp_path, monkeypatch):
    """Loaded splits are kept per visitor: a visitor's many loads push out their own oldest first, and
    past the studio's cap the oldest of anyone's that no queued or running run reads."""
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    monkeypatch.setattr(hv, "MAX_KEPT_PER_OWNER", 2)
    monkeypatch.setattr(hv, "MAX_KEPT", 3)
    studio = Studio(tmp_path / "home", Policy(public=True))
    alice = Path(hv.hub_source(studio, "me/tickets", split="train", owner=OWNER)["path"])
    loads = [("default", "test"), ("default", "validation"), ("chat", None), ("default", "test")]
    eve = [Path(hv.hub_source(studio, "me/tickets", c, s, owner="hf:eve")["path"]) for c, s in loads]
    assert alice.is_file() and [p.is_file() for p in eve] == [True, False, True, True]  # eve's oldest went
    with studio.jobs.holding():  # alice's run waits in the queue, reading her split
        config = train_config("minilm", {"path": str(alice), "name": alice.name}, "classification", {}, "", {})
        studio.submit(config, OWNER)
        monkeypatch.setattr(hv, "MAX_KEPT", 1)
        hv.hub_source(studio, "me/tickets", "default", "validation", owner="hf:eve")
        assert alice.is_file()  # in use: the studio's cap passes it by
        assert not eve[2].exists()  # eve's older loads went instead
        studio.jobs.stop(studio.jobs.jobs()[0].id)
    studio.jobs.close()


def test_the_studio_trains_on_a_hub_dataset_checked_against_its_validation_split(offline, tmp_path):
    """The Data tab's Hub source, then Start (`train_view.start_training`: the run's config, then
    `Studio.submit`): the run trains on the split and validates on the dataset's own validation split."""
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    studio = Studio(tmp_path / "home")
    source = hv.hub_source(studio, "me/tickets")
    settings = {"auto": False, "bottleneck": 8, "batch_size": 8, "epochs": 1.0, "lr": 3e-3, "max_length": 32}
    job_id, _ = h.start_training(studio, None, "minilm", {**source, "ready": True}, "classification", {}, "", settings)
    job = studio.jobs.get(job_id)
    studio.jobs.wait(job_id, 300)
    studio.jobs.close()
    assert job.status == "completed", job.error
    training = next(e for e in job.events if e["kind"] == "status" and e.get("status") == "training")
    assert training["info"]["train_rows"] == 30 and training["info"]["val_rows"] == 6  # not a share of the 30
    saved = json.loads((job.run.dir / "config.json").read_text())
    assert saved["data"] == source["path"] and saved["val_data"] == source["val_path"]
    assert studio.library.names() == ["tickets-train-r8"]


def long_tickets() -> dict[str, bytes]:
    """A dataset whose parquet is small (its long texts compress) and whose JSON lines are ten times larger."""
    texts = [(f"{WORDS[label][i % 5]} " * 40 + str(i), k) for i in range(60) for k, label in enumerate(LABELS)]
    return {
        "README.md": readme({}),
        "data/train-0.parquet": parquet(texts),
        "data/validation-0.parquet": parquet(texts),
    }


def test_a_hub_dataset_within_the_size_limit_is_not_refused_for_its_kept_files_size(offline, tmp_path, monkeypatch):
    """The Hub's parquet passes the policy's byte limit before the download; the JSON lines the studio keeps
    are ten times larger, and neither the preview nor Start refuses them for it (their rows are capped).
    An upload of that size still is; a kept split no run could read is refused at once."""
    files = long_tickets()
    cache_repo(offline, "me/long", files, commit=COMMIT, repo_type="dataset")
    limit = 64 * 2**10
    assert len(files["data/train-0.parquet"]) < limit
    studio = Studio(tmp_path / "home", Policy(public=True, max_data_bytes=limit))
    source = hv.hub_source(studio, "me/long", owner=OWNER)
    kept = tmp_path / "home" / "hub-data"
    assert all(p.stat().st_size > limit for p in kept.rglob("*.jsonl"))
    shown = dv.describe_data(studio, {**source, "ready": True}, "classification", {}, "minilm", 64)  # the preview
    assert "180 of 180 rows used" in shown["summary"]
    config = train_config("minilm", {**source, "ready": True}, "classification", {}, "", {"max_length": 32})
    quotas.check_submit(studio, config, OWNER)  # what Start checks before it queues the run: no refusal
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    studio.upload_roots.append(uploads)
    upload = uploads / "long.jsonl"
    upload.write_bytes(next(kept.rglob("long-train.jsonl")).read_bytes())
    with pytest.raises(AdapterError, match=r"long.jsonl is .* over the 65.5 KB limit"):
        dv.describe_data(studio, {"path": str(upload), "name": upload.name}, "classification", {}, "minilm", 64)
    monkeypatch.setattr(hv, "MAX_BYTES", limit)  # the engine's own cap on a run's data file
    fresh = Studio(tmp_path / "home2", Policy(public=True, max_data_bytes=limit))
    with pytest.raises(AdapterError, match=r"me/long train is 0.1 MB as the JSON lines .* a training run"):
        hv.hub_source(fresh, "me/long", owner=OWNER)
    assert not list((tmp_path / "home2" / "hub-data").rglob("*.jsonl*"))  # nothing half-kept


def test_the_upload_box_says_the_policys_own_limit(tmp_path):
    assert dv.upload_label(Studio(tmp_path / "a", Policy(public=True))).endswith("(10 MB max)")
    assert dv.upload_label(Studio(tmp_path / "b", Policy.local())).endswith("(50 MB max)")


def test_a_script_based_dataset_is_refused_in_the_studio(hf_home, monkeypatch, tmp_path):
    hub = FakeHub(monkeypatch, hf_home, {"tickets.py": b"raise SystemExit\n"}, meta={})
    with pytest.raises(AdapterError, match="script-based dataset"):
        hv.hub_lookup(Studio(tmp_path / "home", Policy(public=True)), "me/tickets", owner=OWNER)
    assert hub.downloads == []


@pytest.mark.slow
def test_load_hub_data_over_http(offline, tmp_path):
    from gradio_client import Client

    from studio.ui import build_app, launch

    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    demo = build_app(Studio(tmp_path / "home"))
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        config, split, note = client.predict("me/tickets", api_name="/hub_dataset_info")
        assert "train" in str(split) and "me/tickets" in note
        out = client.predict("me/tickets", "default", "test", "classification", "minilm", 64, api_name="/load_hub_data")
        assert out[0] == "tickets-test.jsonl" and "6 of 6 rows used" in out[2] and "From the Hub" in out[2]
        # The session's Hub data trains as an upload does (the README's API example, step by step).
        settings = dict(auto=False, bottleneck=8, batch_size=8, epochs=1, lr=3e-3, max_length=32)
        run_id = client.predict(
            base_model="minilm", task="classification", name="", **settings, api_name="/start_training"
        )[0]
        end = time.monotonic() + 300
        while "completed" not in (status := client.predict(run_id, api_name="/training_status")):
            assert time.monotonic() < end and "failed" not in status, status
            time.sleep(1)
        assert "tickets-test-r8" in status
    finally:
        demo.close()
