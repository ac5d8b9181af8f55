"""A Hugging Face Hub dataset as a data source: `hf://datasets/OWNER/NAME[@revision]`, a configuration
and a split (by default `train`, with the dataset's own validation split when it has one).

Nothing is fetched before it is known: `describe` reads the dataset's file list, file sizes and card
(the Hub's `dataset_info`, or the cached snapshot offline), and `check_size` refuses a dataset over the
caller's limit, by the bytes it would download and the size its card declares. A dataset that needs a
loading script is refused then too: its code never runs (`trust_remote_code` is never set). The chosen
split's files go to the Hugging Face cache (`snapshot_download`, the `datasets--OWNER--NAME` layout) and
`datasets` reads them (parquet, CSV, TSV, JSON) from there. Under HF_HUB_OFFLINE=1 only that cache is
read, and a dataset it lacks is said at once. A commit revision already cached is read without the
network at all (a commit cannot change).
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..pull import cache_dir, is_connection_error, is_refusal, offline
from .data import DataError, TaskData, detect_columns, validate
from .hub_errors import hub_error
from .hub_files import config_names, default_config, split_files, validation_split
from .hub_read import read_files

DATASET_PREFIX = "hf://datasets/"
_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<rev>[\w./-]{1,128}))?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
CARD = "README.md"


@dataclass(frozen=True)
class DatasetRef:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return DATASET_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_dataset_ref(source: Any) -> DatasetRef | None:
    """`hf://datasets/OWNER/NAME[@revision]` (also OWNER/NAME where a caller already knows it is one);
    None for anything that does not start with hf://datasets/."""
    text = str(source or "").strip()
    if not text.startswith(DATASET_PREFIX):
        return None
    match = _REF.match(text[len(DATASET_PREFIX) :])
    if match is None or ".." in text:
        raise DataError(f"{text[:120]!r} is not a Hub dataset; write hf://datasets/OWNER/NAME (or ...@revision).")
    return DatasetRef(match["repo"], match["rev"])


def is_hub_data(source: Any) -> bool:
    return str(source or "").strip().startswith(DATASET_PREFIX)


def dataset_ref(source: Any) -> DatasetRef:
    """A dataset id as a person types it (OWNER/NAME, with or without hf://datasets/) as a reference."""
    text = str(source or "").strip().removeprefix("https://huggingface.co/datasets/").removeprefix(DATASET_PREFIX)
    if not text:
        raise DataError("Type a Hub dataset id, such as legacy-datasets/banking77.")
    return parse_dataset_ref(DATASET_PREFIX + text)


@dataclass
class HubDataset:
    """One configuration of a Hub dataset as known before its data is fetched."""

    ref: DatasetRef
    revision: str  # the commit read
    configs: list[str]
    config: str
    splits: dict[str, list[str]]  # split -> its data files
    sizes: dict[str, int | None]  # file -> bytes (None: the Hub did not say)
    declared: dict[str, Any] = field(default_factory=dict)  # the card's dataset_info of this configuration
    snapshot: Path | None = None  # the cached snapshot, when read from the cache

    @property
    def pinned(self) -> str:
        """The reference at the commit read: what a run records, so that it trains on what was checked."""
        return str(DatasetRef(self.ref.repo_id, self.revision))

    def label(self, split: str) -> str:
        """How messages and summaries name a split: OWNER/NAME (config) train."""
        config = f" ({self.config})" if len(self.configs) > 1 or self.config != "default" else ""
        return f"{self.ref.repo_id}{config} {split}"

    def pick(self, split: str | None) -> tuple[str, str | None]:
        """(the split to train on, the dataset's validation split or None)."""
        split = split or "train"
        if split not in self.splits:
            raise DataError(
                f"{self.ref.repo_id} ({self.config}) has no split {split!r}; it has {', '.join(self.splits)}. "
                "Pick one (--data-split in the CLI, the Split box in the studio)."
            )
        return split, validation_split(self.splits, split)

    def fetch_bytes(self, splits: list[str]) -> int | None:
        sizes = [self.sizes.get(f) for s in splits for f in self.splits[s]]
        return None if any(n is None for n in sizes) else sum(sizes)

    def declared_bytes(self, splits: list[str]) -> int | None:
        """The data's size as the card declares it: its splits' num_bytes, else the configuration's."""
        by_split = {str(s.get("name")): s for s in self.declared.get("splits") or [] if isinstance(s, dict)}
        sizes = [by_split.get(s, {}).get("num_bytes") for s in splits]
        if all(isinstance(n, int) for n in sizes):
            return sum(sizes)
        total = self.declared.get("dataset_size")
        return total if isinstance(total, int) else None


def describe(
    source: Any, config: str | None = None, token: str | bool | None = None, any_config: bool = False
) -> HubDataset:
    """What the Hub (or the cache) says of a dataset's configuration: its splits' files and sizes. Fetches
    no data file. Refuses a script-based dataset. Without `config`, the dataset's default one; with
    `any_config` (a look-up that lists them), its first when it has several and no default."""
    ref = source if isinstance(source, DatasetRef) else parse_dataset_ref(source) or dataset_ref(source)
    try:
        if offline() or (ref.revision and _COMMIT.match(ref.revision) and _cached(ref)):
            return _from_cache(ref, config, any_config)
        try:
            info = _hub_api().dataset_info(ref.repo_id, revision=ref.revision, files_metadata=True, token=token)
        except Exception as e:
            if is_refusal(e) or not is_connection_error(e):
                raise
            return _from_cache(ref, config, any_config)  # the Hub cannot be reached: the cache may serve it
        files = {s.rfilename: s.size for s in info.siblings or []}
        card = info.card_data.to_dict() if info.card_data is not None else {}
        return _described(ref, info.sha or ref.revision or "main", files, card, config, None, any_config)
    except DataError:
        raise
    except Exception as e:
        raise hub_error(ref, e) from None


describe_dataset = describe  # the engine's face name (a bare `describe` would say too little there)


def check_size(info: HubDataset, splits: list[str], max_bytes: int | None) -> None:
    """Refuse, before any download, a dataset whose files or declared size are over `max_bytes`."""
    if max_bytes is None:
        return
    fetch, declared = info.fetch_bytes(splits), info.declared_bytes(splits)
    what = f"{info.ref.repo_id} ({info.config}: {', '.join(splits)})"
    if fetch is None:
        raise DataError(f"{what}: the Hub does not say how big its files are, so it is not fetched here.")
    for size, how in ((fetch, "would download"), (declared, "declares (its card's dataset_info)")):
        if size is not None and size > max_bytes:
            raise DataError(
                f"{what} {how} {_mb(size)}; this studio takes at most {_mb(max_bytes)} of data. Pick a smaller "
                "dataset or configuration, or run the studio on your own machine."
            )


def fetch(info: HubDataset, splits: list[str], token: str | bool | None = None) -> Path:
    """The snapshot holding the splits' files (and the card): downloaded into the Hugging Face cache,
    or found there."""
    files = sorted({f for s in splits for f in info.splits[s]})
    if info.snapshot is not None:
        return info.snapshot
    from huggingface_hub import snapshot_download

    patterns = [glob.escape(f) for f in files] + [CARD]
    try:
        return Path(
            snapshot_download(
                repo_id=info.ref.repo_id, repo_type="dataset", revision=info.revision, allow_patterns=patterns,
                cache_dir=str(cache_dir()), token=token,
            )
        )  # fmt: skip
    except Exception as e:
        raise hub_error(info.ref, e) from None


@dataclass
class HubTables:
    info: HubDataset
    split: str
    train: pd.DataFrame
    val_split: str | None
    val: pd.DataFrame | None


def hub_tables(
    source: Any,
    config: str | None = None,
    split: str | None = None,
    max_bytes: int | None = None,
    token: str | bool | None = None,
    validation: bool = True,
    max_rows: int | None = None,
) -> HubTables:
    """The split to train on and (with `validation`) the dataset's validation split, checked then fetched;
    a split over `max_bytes` is refused before any download, one over `max_rows` before it is read."""
    info = describe(source, config, token)
    split, val = info.pick(split)
    val = val if validation else None
    wanted = [split] + ([val] if val else [])
    check_size(info, wanted, max_bytes)
    snapshot = fetch(info, wanted, token)
    train = _read(info, snapshot, split, max_rows)
    return HubTables(info, split, train, val, _read(info, snapshot, val, max_rows) if val else None)


def load_hub_data(
    source: Any,
    task: str,
    columns: dict[str, str] | None = None,
    config: str | None = None,
    split: str | None = None,
    max_bytes: int | None = None,
    token: str | bool | None = None,
    validation: bool = True,
) -> tuple[TaskData, TaskData | None]:
    """A Hub dataset's split as validated training data, and its validation split's (None without one);
    each summary's `source` is the dataset at the commit read."""
    tables = hub_tables(source, config, split, max_bytes, token, validation)
    name = tables.info.label(tables.split)
    data = validate(tables.train, task, detect_columns(tables.train, task, columns, name), name)
    data.summary.source = tables.info.pinned
    if tables.val is None:
        return data, None
    val_name = tables.info.label(tables.val_split)
    val_columns = {**data.summary.columns, **(columns or {})}
    val = validate(tables.val, task, detect_columns(tables.val, task, val_columns, val_name), val_name)
    val.summary.source = tables.info.pinned
    return data, val


# Reading what the Hub or the cache knows --------------------------------------------------------------
def _read(info: HubDataset, snapshot: Path, split: str, max_rows: int | None = None) -> pd.DataFrame:
    return read_files(snapshot, info.splits[split], info.label(split), max_rows)


def _hub_api():
    from huggingface_hub import HfApi

    return HfApi()


def _cached(ref: DatasetRef) -> bool:
    from huggingface_hub.file_download import repo_folder_name

    return (
        cache_dir() / repo_folder_name(repo_id=ref.repo_id, repo_type="dataset") / "snapshots" / ref.revision
    ).is_dir()


def _from_cache(ref: DatasetRef, config: str | None, any_config: bool = False) -> HubDataset:
    from huggingface_hub import snapshot_download
    from huggingface_hub.repocard import metadata_load

    snapshot = Path(
        snapshot_download(
            repo_id=ref.repo_id, repo_type="dataset", revision=ref.revision, cache_dir=str(cache_dir()),
            local_files_only=True,
        )
    )  # fmt: skip
    files = {
        p.relative_to(snapshot).as_posix(): p.stat().st_size
        for p in sorted(snapshot.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(snapshot).parts
    }
    card = (metadata_load(snapshot / CARD) or {}) if (snapshot / CARD).is_file() else {}
    return _described(ref, snapshot.name, files, card, config, snapshot, any_config)


def _described(ref, revision, files, card, config, snapshot, any_config=False) -> HubDataset:
    script = f"{ref.repo_id.rsplit('/', 1)[1]}.py"
    if script in files:
        raise DataError(
            f"{ref.repo_id} is a script-based dataset ({script} builds it by running code from its repository); "
            "Adapter Studio never runs a dataset's code. Use its parquet conversion, if the Hub made one "
            f"(hf://datasets/{ref.repo_id}@refs/convert/parquet), or a dataset stored as parquet, CSV or JSON."
        )
    if not config:
        try:
            config = default_config(card, ref.repo_id)
        except DataError:
            if not any_config:
                raise
            config = config_names(card)[0]
    splits = split_files(list(files), card, config, ref.repo_id)
    infos = card.get("dataset_info")
    infos = infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []
    declared = next((i for i in infos if isinstance(i, dict) and i.get("config_name", "default") == config), {})
    return HubDataset(ref, revision, config_names(card), config, splits, files, declared, snapshot)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"
