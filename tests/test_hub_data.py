"""Hub datasets as a data source, without the network: datasets in a Hugging Face cache filled by hand in
huggingface_hub's own layout (`datasets--OWNER--NAME`), read offline, and the Hub's answers (the dataset's
file list, sizes and card; the download) mocked where a test needs it online."""

import fnmatch
import io
import json
import re
import time

import datasets
import huggingface_hub
import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.hf_api import DatasetInfo
from share_fixtures import cache_repo

from adapter_core.cli import main
from adapter_core.engine.data import DataError
from adapter_core.engine.hub_data import (
    DatasetRef,
    describe,
    hub_tables,
    load_hub_data,
    parse_dataset_ref,
)
from adapter_core.engine.hub_files import default_config, split_files

COMMIT = "d47a5e7" + "0" * 33
LABELS = ["billing", "orders", "tech"]
WORDS = {
    "billing": ["charged twice", "refund my payment", "invoice is wrong", "card was billed", "price differs"],
    "orders": ["where is my parcel", "order not arrived", "track my package", "delivery is late", "wrong item sent"],
    "tech": ["app crashes", "cannot log in", "page will not load", "password reset fails", "error on checkout"],
}


def parquet(rows: list[tuple[str, int]]) -> bytes:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=LABELS)})
    ds = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]}, features=features)
    out = io.BytesIO()
    ds.to_parquet(out)
    return out.getvalue()


def rows(part: str, n: int) -> list[tuple[str, int]]:
    return [(f"{part} {i}: {WORDS[label][i % 5]}", k) for i in range(n) for k, label in enumerate(LABELS)]


def card(sizes: dict | None = None) -> dict:
    sizes = sizes or {"train": 1200, "validation": 300, "test": 300}
    return {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in ("train", "validation", "test")],
            },
            {"config_name": "chat", "data_files": "chat/*.jsonl"},
        ],
        "dataset_info": [
            {
                "config_name": "default",
                "splits": [{"name": s, "num_bytes": n, "num_examples": 10} for s, n in sizes.items()],
                "download_size": 4000,
                "dataset_size": sum(sizes.values()),
            }
        ],
    }


def readme(meta: dict) -> bytes:
    return f"---\n{yaml.safe_dump(meta)}---\n# Tickets\n".encode()


def chat_jsonl() -> bytes:
    lines = [{"prompt": f"Say {w}", "completion": f"{w}, done.", "id": i} for i, w in enumerate(["hi", "ok", "no"] * 4)]
    return "\n".join(json.dumps(x) for x in lines).encode()


def tickets(meta: dict | None = None) -> dict[str, bytes]:
    return {
        "README.md": readme(meta or card()),
        "data/train-00000-of-00001.parquet": parquet(rows("train", 10)),
        "data/validation-00000-of-00001.parquet": parquet(rows("val", 2)),
        "data/test-00000-of-00001.parquet": parquet(rows("test", 2)),
        "chat/part-0.jsonl": chat_jsonl(),
    }


class FakeHub:
    """The Hub's two answers: the dataset's info (files, sizes, card) and the download, which fills the
    cache exactly as huggingface_hub does (only the files asked for)."""

    def __init__(self, monkeypatch, cache, files: dict[str, bytes], repo_id="me/tickets", meta=None, sizes=None):
        self.calls, self.downloads, self.tokens = [], [], []
        self.cache, self.files, self.repo_id = cache, files, repo_id
        meta = meta if meta is not None else yaml.safe_load(files["README.md"].decode().split("---")[1])
        siblings = [{"rfilename": f, "size": (sizes or {}).get(f, len(b))} for f, b in files.items()]

        def dataset_info(api, repo_id, revision=None, files_metadata=False, token=None, **kw):
            self.calls.append(repo_id)
            self.tokens.append(token)
            assert files_metadata, "the sizes come with the files' metadata"
            return DatasetInfo(id=repo_id, sha=COMMIT, siblings=siblings, cardData=meta)

        def snapshot_download(repo_id, repo_type=None, revision=None, allow_patterns=None, **kw):
            if kw.get("local_files_only"):  # the cache alone: no network, the real function
                return real(repo_id, repo_type=repo_type, revision=revision, allow_patterns=allow_patterns, **kw)
            assert repo_type == "dataset" and revision == COMMIT
            wanted = {f: b for f, b in files.items() if any(fnmatch.fnmatch(f, p) for p in allow_patterns)}
            self.downloads.append(sorted(wanted))
            return str(cache_repo(self.cache, repo_id, wanted, commit=COMMIT, repo_type="dataset"))

        real = huggingface_hub.snapshot_download
        monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
        monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)


# References and files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, ref",
    [
        ("hf://datasets/PolyAI/banking77", DatasetRef("PolyAI/banking77")),
        ("hf://datasets/me/x@refs/convert/parquet", DatasetRef("me/x", "refs/convert/parquet")),
        ("data.csv", None),
        ("hf://me/adapter", None),  # an adapter repository, not a dataset
    ],
)
def test_dataset_references(text, ref):
    assert parse_dataset_ref(text) == ref


@pytest.mark.parametrize("text", ["hf://datasets/nope", "hf://datasets/a/../b", "hf://datasets/a/b c"])
def test_a_malformed_dataset_reference_says_how_to_write_one(text):
    with pytest.raises(DataError, match="write hf://datasets/OWNER/NAME"):
        parse_dataset_ref(text)


@pytest.mark.parametrize(
    "files, splits",
    [
        (["train.csv", "test.csv", "README.md"], {"train": ["train.csv"], "test": ["test.csv"]}),
        (["data/train-0.parquet", "data/dev-0.parquet"], {"train": ["data/train-0.parquet"], "validation": ["data/dev-0.parquet"]}),
        (["data/train/a.jsonl", "data/valid/b.jsonl"], {"train": ["data/train/a.jsonl"], "validation": ["data/valid/b.jsonl"]}),
        (["all.csv", "notes.txt", ".hidden/x.csv"], {"train": ["all.csv"]}),
        (["my_training_set.tsv"], {"train": ["my_training_set.tsv"]}),
    ],
)  # fmt: skip
def test_splits_are_found_in_file_and_folder_names_as_datasets_finds_them(files, splits):
    assert split_files(files, {}, "default", "me/x") == splits


def test_a_cards_globs_match_as_fsspec_reads_them_in_time_linear_in_the_name():
    """A card's data_files are a stranger's patterns: matched as fsspec's own translation matches them,
    and never by backtracking (a regex of 12 stars took minutes on a long name and held the GIL)."""
    import random
    import threading

    from datasets.data_files import DEFAULT_PATTERNS_SPLIT_IN_DIR_NAME, DEFAULT_PATTERNS_SPLIT_IN_FILENAME
    from fsspec.utils import glob_translate

    from adapter_core.engine.hub_files import Glob

    tables = (DEFAULT_PATTERNS_SPLIT_IN_FILENAME, DEFAULT_PATTERNS_SPLIT_IN_DIR_NAME)
    patterns = [p for table in tables for ps in table.values() for p in ps]
    patterns += ["data/train-*", "**/*.parquet", "data/*-of-*.parquet", "a?c/[!x]*.csv", "x/**/y*.json", "*"]
    rng = random.Random(0)
    names = ["data/train-00000-of-00001.parquet", "a/b/validation/x.parquet", "dev.jsonl", "abc/y.csv", "adev0.csv"]
    names += [
        "".join(rng.choice("atrinvlsdexo-_./0123456789bc") for _ in range(rng.randint(1, 30))) for _ in range(500)
    ]
    for pattern in patterns:
        fsspec, ours = re.compile(glob_translate(pattern)), Glob(pattern)
        assert [n for n in names if ours.match(n)] == [n for n in names if fsspec.match(n)], pattern
    answer = []
    hostile = {"configs": [{"config_name": "default", "data_files": "*a" * 12 + "b.parquet"}]}
    worker = threading.Thread(
        target=lambda: answer.append(
            _refusal(lambda: split_files(["a" * 5000 + ".parquet"], hostile, "default", "e/x"))
        ),
        daemon=True,  # were it to hang, the test fails rather than waits
    )
    worker.start()
    worker.join(30)
    assert answer and "no data file that can be read" in answer[0]
    many = {"configs": [{"config_name": "default", "data_files": [f"d{i}/*.csv" for i in range(101)]}]}
    with pytest.raises(DataError, match="lists 101 data_files patterns for 'default'; this studio reads at most 100"):
        split_files(["d0/a.csv"], many, "default", "e/x")
    long = {"configs": [{"config_name": "default", "data_files": "a" * 501 + "*"}]}
    with pytest.raises(DataError, match="is 502 characters; this studio reads at most 500"):
        split_files(["a.csv"], long, "default", "e/x")


def _refusal(call) -> str:
    try:
        call()
    except DataError as e:
        return str(e)
    return ""


def test_the_cards_configs_say_which_files_hold_which_split():
    files = list(tickets())
    assert split_files(files, card(), "default", "me/t") == {
        s: [f"data/{s}-00000-of-00001.parquet"] for s in ("train", "validation", "test")
    }
    assert split_files(files, card(), "chat", "me/t") == {"train": ["chat/part-0.jsonl"]}
    with pytest.raises(DataError, match="no configuration 'nope'; it has default, chat"):
        split_files(files, card(), "nope", "me/t")
    two = {"configs": [{"config_name": "a", "data_files": "a.csv"}, {"config_name": "b", "data_files": "b.csv"}]}
    with pytest.raises(DataError, match=r"2 configurations \(a, b\); pick one \(--data-config"):
        default_config(two, "me/t")
    assert default_config({"configs": [*two["configs"][:1], {**two["configs"][1], "default": True}]}, "me/t") == "b"


# Offline, from the cache ------------------------------------------------------------------------------
def test_a_cached_dataset_loads_offline_with_its_validation_split_and_label_names(offline):
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    train, val = load_hub_data("hf://datasets/me/tickets", "classification")
    assert train.summary.rows_used == 30 and val.summary.rows_used == 6
    assert train.labels == LABELS and set(train.frame["label"]) == set(LABELS)  # class names, not 0, 1, 2
    assert train.summary.file == "me/tickets (default) train" and val.summary.file == "me/tickets (default) validation"
    tables = hub_tables("hf://datasets/me/tickets", split="test", validation=False)
    assert len(tables.train) == 6 and tables.val is None and tables.info.pinned == f"hf://datasets/me/tickets@{COMMIT}"


def test_another_configuration_and_its_columns_offline(offline):
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    train, val = load_hub_data("hf://datasets/me/tickets", "instruction", config="chat")
    assert val is None and train.summary.columns == {"instruction": "prompt", "response": "completion"}
    assert train.frame["instruction"].iloc[0] == "Say hi" and train.summary.rows_used == 3  # duplicates dropped


def test_a_dataset_missing_from_the_cache_says_so_at_once_offline(offline):
    start = time.perf_counter()
    with pytest.raises(DataError, match="HF_HUB_OFFLINE=1 is set, and it is not in the local Hugging Face cache"):
        load_hub_data("hf://datasets/me/absent", "classification")
    assert time.perf_counter() - start < 2


def test_a_split_the_dataset_lacks_is_named_with_those_it_has(offline):
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    with pytest.raises(DataError, match="no split 'dev'; it has train, validation, test"):
        load_hub_data("hf://datasets/me/tickets", "classification", split="dev")


# Online: the checks before any download ---------------------------------------------------------------
def test_online_only_the_chosen_splits_and_the_card_are_downloaded(hf_home, monkeypatch):
    hub = FakeHub(monkeypatch, hf_home, tickets())
    train, val = load_hub_data("hf://datasets/me/tickets", "classification", max_bytes=10**6, token=False)
    assert hub.downloads == [
        ["README.md", "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"]
    ]
    assert hub.tokens == [False] and train.summary.rows_used == 30 and val.summary.rows_used == 6
    # Once downloaded, the commit reads from the cache, even offline.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again, _ = load_hub_data(f"hf://datasets/me/tickets@{COMMIT}", "classification")
    assert again.summary.rows_used == 30 and hub.calls == ["me/tickets"]


@pytest.mark.parametrize(
    "sizes, files, message",
    [
        (None, {"data/train-00000-of-00001.parquet": 900_000}, "would download 0.9 MB; this studio takes at most 0.5 MB"),
        ({"train": 400_000, "validation": 200_000, "test": 1}, {}, r"declares \(its card's dataset_info\) 0.6 MB"),
    ],
    ids=["files-over-the-limit", "card-declares-more"],
)  # fmt: skip
def test_a_dataset_over_the_limit_is_refused_before_anything_is_fetched(hf_home, monkeypatch, sizes, files, message):
    data = tickets(card(sizes) if sizes else None)
    hub = FakeHub(monkeypatch, hf_home, data, sizes=files)
    with pytest.raises(DataError, match=message):
        load_hub_data("hf://datasets/me/tickets", "classification", max_bytes=2**19, token=False)
    assert hub.calls == ["me/tickets"] and hub.downloads == [] and not hf_home.exists()
    assert load_hub_data("hf://datasets/me/tickets", "classification")[0].summary.rows_used == 30  # no limit: loads


def test_a_script_based_dataset_is_refused_and_its_code_never_fetched(hf_home, monkeypatch):
    hub = FakeHub(monkeypatch, hf_home, {"tickets.py": b"import os\nos.system('touch PWNED')\n"}, meta={})
    with pytest.raises(DataError, match=r"script-based dataset \(tickets.py .*never runs a dataset's code"):
        describe("hf://datasets/me/tickets")
    assert hub.downloads == []


@pytest.mark.parametrize(
    "status, message",
    [
        (404, "No dataset me/absent on the Hugging Face Hub, or it is private"),
        (503, "the Hugging Face Hub cannot be reached, and it is not in the local Hugging Face cache"),
    ],
)
def test_a_missing_dataset_or_an_outage_is_said_in_plain_words(hf_home, monkeypatch, status, message):
    import httpx2  # huggingface_hub's own HTTP client
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    def answer(*a, **k):
        request = httpx2.Request("GET", "https://huggingface.co/api/datasets/me/absent")
        response = httpx2.Response(status, request=request)
        raise (RepositoryNotFoundError if status == 404 else HfHubHTTPError)("no", response=response)

    monkeypatch.setattr(HfApi, "dataset_info", answer)
    with pytest.raises(DataError, match=message) as err:
        describe("hf://datasets/me/absent")
    assert str(hf_home) not in str(err.value)


# The CLI ----------------------------------------------------------------------------------------------
def test_the_cli_trains_on_a_hub_dataset_and_its_validation_split_offline(offline, tmp_path, capsys):
    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    out = tmp_path / "run"
    args = ["train", "--base", "minilm", "--data", "hf://datasets/me/tickets", "--data-split", "train"]
    assert main([*args, "--max-steps", "2", "--batch-size", "8", "--max-length", "32", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == f"hf://datasets/me/tickets@{COMMIT}" and config["data_split"] == "train"  # pinned
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    info = next(e["info"] for e in events if e.get("kind") == "status" and (e.get("info") or {}).get("val_rows"))
    assert info["train_rows"] == 30 and info["val_rows"] == 6  # the dataset's own validation split
    assert main(["train", "--data", "data.csv", "--data-split", "test", "--out", str(tmp_path / "x")]) == 2
    assert "data_split choose within a Hub dataset" in capsys.readouterr().err


def test_a_cli_run_pins_the_dataset_commit_and_resumes_on_it_when_main_has_moved(offline, tmp_path, monkeypatch):
    """config.json and the data event record the commit read; after a Ctrl-C, the dataset's `main` moves
    to a commit with twice the rows, and `--resume` still reads the rows the run started on."""
    import signal

    from adapter_core.engine import loop

    cache_repo(offline, "me/tickets", tickets(), commit=COMMIT, repo_type="dataset")
    real = loop.report_step

    def report_step(r, s):
        real(r, s)
        if s.step == 2:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop after this step

    monkeypatch.setattr(loop, "report_step", report_step)
    out = tmp_path / "run"
    args = ["train", "--base", "minilm", "--data", "hf://datasets/me/tickets", "--max-steps", "4", "--eval-every", "1"]
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert main([*args, "--batch-size", "8", "--max-length", "32", "--out", str(out)]) == 0
        assert json.loads((out / "status.json").read_text())["status"] == "stopped"
        pinned = f"hf://datasets/me/tickets@{COMMIT}"
        assert json.loads((out / "config.json").read_text())["data"] == pinned
        moved = "e" * 40
        cache_repo(offline, "me/tickets", {**tickets(), "data/train-00000-of-00001.parquet": parquet(rows("more", 20))},
                   commit=moved, repo_type="dataset")  # fmt: skip
        assert load_hub_data("hf://datasets/me/tickets", "classification")[0].summary.rows_used == 60  # main moved
        monkeypatch.setattr(loop, "report_step", real)
        assert main(["train", "--resume", "--out", str(out)]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    data = [e["info"] for e in events if e.get("kind") == "data"]
    assert len(data) == 2 and all(d["source"] == pinned and d["rows_used"] == 30 for d in data)
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
