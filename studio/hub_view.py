"""The Data step's Hub source: a dataset id, its configuration and split, checked and fetched through the
engine's Hub data source (`adapter_core.engine.hub_data`), then kept as a data file of the studio's own so
that the preview, the mapping, the validation summary, the charts and training read it as they read an
upload.

Checks before anything is fetched: the dataset's files and declared size against the policy's data
limit, script-based datasets refused (their code never runs). The kept split is not held to that byte
limit again (its JSON lines are often larger than the Hub's parquet): its rows are capped instead. A visitor's request never carries the
server's Hugging Face credentials (`token=False` in public mode): only public datasets load there.
Offline (HF_HUB_OFFLINE=1), a dataset in the Hugging Face cache loads, and a missing one is said at once.
In public mode it needs a Hugging Face sign-in, as a Hub pull does.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapter_core import AdapterError
from adapter_core.engine import MAX_BYTES, dataset_ref, describe_dataset, hub_tables

from .service import HUB_DATA, Studio
from .text import md, studio_words

MAX_KEPT = 64  # splits kept at once in the studio; the oldest not in use go first
MAX_KEPT_PER_OWNER = 8  # a visitor's own; their oldest go first


def hub_root(studio: Studio) -> Path:
    return studio.home / HUB_DATA


def _token(studio: Studio) -> bool | None:
    """Never the server's own Hugging Face token for a visitor; the local user's login otherwise."""
    return False if studio.policy.public else None


def hub_lookup(studio: Studio, dataset_id: str, config: str | None = None, owner: str | None = None) -> dict[str, Any]:
    """What the Hub (or the cache) says of a dataset before any of its data is fetched: its
    configurations, the one read, and each split's download size in bytes (None: not said)."""
    _check_caller(studio, owner)
    with _studio_words():
        info = describe_dataset(dataset_ref(dataset_id), config or None, _token(studio), any_config=True)
    return {
        "repo": info.ref.repo_id,
        "revision": info.revision,
        "configs": info.configs,
        "config": info.config,
        "splits": {s: info.fetch_bytes([s]) for s in info.splits},
    }


def hub_source(
    studio: Studio, dataset_id: str, config: str | None = None, split: str | None = None, owner: str | None = None
) -> dict[str, Any]:
    """A Hub dataset's split as a data source of the Data tab: {"path", "name", "hub"}. The split (and the
    dataset's validation split, kept beside it as `val_path`) is refused over the policy's bytes before
    any download and over its rows before anything is written."""
    _check_caller(studio, owner)
    policy = studio.policy
    with _studio_words():
        tables = hub_tables(
            dataset_ref(dataset_id),
            config or None,
            split or None,
            max_bytes=policy.max_data_bytes,
            token=_token(studio),
            max_rows=policy.max_data_rows,
        )
    info = tables.info
    folder = _folder(studio, owner, f"{info.pinned}|{info.config}|{tables.split}")
    stem = f"{info.ref.repo_id.split('/')[1]}-{tables.split}"
    path = _write(tables.train, folder / f"{stem}.jsonl", info.label(tables.split))
    source = {
        "path": str(path),
        "name": path.name,
        "hub": {
            "dataset": info.pinned,
            "config": info.config,
            "split": tables.split,
            "label": info.label(tables.split),
        },
    }
    if tables.val is not None:
        val_path = _write(tables.val, folder / f"{stem}-{tables.val_split}.jsonl", info.label(tables.val_split))
        source["val_path"], source["val_rows"] = str(val_path), len(tables.val)
        source["hub"]["validation"] = tables.val_split
    return source


@contextmanager
def _studio_words():
    """The engine's messages name the CLI's flag and the studio's box; a studio message names the box."""
    try:
        yield
    except AdapterError as e:
        raise type(e)(studio_words(str(e))) from None


def _check_caller(studio: Studio, owner: str | None) -> None:
    """In public mode the Hub is asked, and its files cached, for signed-in visitors only (as for pulls):
    a visitor without a sign-in trains on the bundled samples anyway."""
    studio.policy.check_heavy(studio.owner(owner), "Loading a dataset from the Hub")


def hub_note(source: dict) -> str:
    """The line the summary starts with for a Hub source: which dataset, at which commit, which splits."""
    hub = source.get("hub") or {}
    if not hub:
        return ""
    val = f"; its {hub['validation']} split validates" if hub.get("validation") else ""
    return f"**From the Hub:** {md(hub['label'])} at {hub['dataset'].rsplit('@', 1)[-1][:12]}{md(val)}."


def lookup_note(found: dict[str, Any]) -> str:
    """A looked-up dataset in a line: its configurations and each split's size."""
    size = lambda n: "size not said" if n is None else f"{n / 2**20:,.1f} MB"  # noqa: E731
    splits = ", ".join(f"{s} ({size(n)})" for s, n in found["splits"].items())
    configs = f" · configurations: {', '.join(found['configs'][:12])}" if len(found["configs"]) > 1 else ""
    return f"**{md(found['repo'])}** ({md(found['config'])}): {md(splits)}{md(configs)}"


def _folder(studio: Studio, owner: str | None, key: str) -> Path:
    """The folder of one visitor's loaded split. Each visitor's folders are theirs: past their own
    MAX_KEPT_PER_OWNER their oldest go, and past the studio's MAX_KEPT the oldest of anyone's, never one
    that a queued or running run reads, so no visitor's loads push out a split another's run needs."""
    root = hub_root(studio)
    mine = root / _digest(str(studio.owner(owner)))
    folder = mine / _digest(key)
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # loaded now: its owner's newest
    in_use = _in_use(studio)
    _evict([p for p in mine.iterdir() if p.is_dir() and p != folder], MAX_KEPT_PER_OWNER - 1, in_use)
    everyone = [p for d in root.iterdir() if d.is_dir() for p in d.iterdir() if p.is_dir() and p != folder]
    _evict(everyone, MAX_KEPT - 1, in_use)
    return folder


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _in_use(studio: Studio) -> set[Path]:
    """The folders that queued or running runs read their data from."""
    active = [j for j in studio.jobs.jobs() if not j.finished.is_set()]
    return {Path(p).resolve().parent for j in active for p in (j.config.data, j.config.val_data) if p}


def _evict(folders: list[Path], keep: int, in_use: set[Path]) -> None:
    spare = sorted((p for p in folders if p.resolve() not in in_use), key=lambda p: p.stat().st_mtime)
    for old in spare[: max(0, len(folders) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _write(frame, path: Path, label: str) -> Path:
    """The split as JSON lines, written whole before it is visible under its name. The studio's byte cap
    does not apply to it again (`Studio.data_bytes_limit`), but a run reads its data under the engine's
    own: a split over that is refused now, not when its run starts."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")  # two visitors may write it at once
    frame.to_json(partial, orient="records", lines=True, force_ascii=False)
    size = partial.stat().st_size
    if size > MAX_BYTES:
        partial.unlink(missing_ok=True)
        raise AdapterError(
            f"{label} is {size / 2**20:,.1f} MB as the JSON lines the studio trains on, over the "
            f"{MAX_BYTES / 2**20:,.0f} MB a training run reads. Pick a smaller split or configuration, or train "
            "on it from the command line, which reads the Hub's files as they are."
        )
    partial.replace(path)
    return path
