"""A folder of adapter folders, read: the layout the studio's library and the server share.

Each adapter is a folder named for it under the root, holding its config and weights (and a training
curve, for the studio's Compare). A folder's `.owner` file (one line) names the visitor who owns it;
a folder without one is shared. `owner=None` reads as one trusted user who sees everything; with an
owner, a call sees that owner's adapters plus the shared ones. A folder that cannot be read is logged
and skipped, never fatal; messages name adapters, never server paths.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AdapterError
from .io import read_adapter_config
from .schema import CURVE_FILE, WEIGHTS_FILE, check_weights_match, read_jsonl, read_safetensors_header

OWNER_FILE = ".owner"
log = logging.getLogger("adapter_core")


@dataclass
class Entry:
    name: str
    path: Path
    meta: dict[str, Any]
    owner: str | None = None  # None: a shared example

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def base(self) -> str:
        return self.meta.get("base_model") or self.meta["base"]["name_or_path"]

    @property
    def training(self) -> dict[str, Any]:
        return self.meta.get("training") or {}

    @property
    def size_bytes(self) -> int:
        return (self.path / WEIGHTS_FILE).stat().st_size

    def curve(self) -> list[dict[str, Any]]:
        """The training curve, one dict per logged step; a truncated or garbled line is skipped."""
        path = self.path / CURVE_FILE
        return read_jsonl(path) if path.is_file() else []

    @property
    def parameters(self) -> int:
        """Trainable parameters (adapter and head), counted from the weights file's header."""
        return sum(math.prod(shape) for _, shape in read_safetensors_header(self.path / WEIGHTS_FILE).values())

    @property
    def version(self) -> float:
        """Changes whenever the weights are replaced, so a served copy knows it is stale."""
        return (self.path / WEIGHTS_FILE).stat().st_mtime


def _read_owner(folder: Path) -> str | None:
    path = folder / OWNER_FILE
    if not path.exists() and not path.is_symlink():
        return None
    with open(path, encoding="utf-8") as f:
        owner = f.read(1024).strip()
    if not owner or "\n" in owner:
        raise AdapterError(f"{folder.name}/{OWNER_FILE} does not hold one owner id.")
    return owner


def _load(folder: Path, owner: str | None = None) -> Entry:
    """Read one adapter folder, checked: its config, its weights' header against the config, its owner."""
    meta = read_adapter_config(folder)
    check_weights_match(meta, read_safetensors_header(folder / WEIGHTS_FILE))
    return Entry(folder.name, folder, meta, owner)


class Library:
    """The adapters under `root`, read afresh on every call: another process (a studio, a replica of
    the server) may change the folder at any time."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # Reading ---------------------------------------------------------------------------------------
    def entries(self, owner: str | None = None) -> list[Entry]:
        """Every readable adapter this owner may see, by name. Never raises for a bad folder."""
        out = []
        try:
            folders = sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
        except OSError as e:
            log.error("The adapter library cannot be listed: %s", e)
            return []
        for folder in folders:
            try:
                if not folder.is_dir():
                    continue
                folder_owner = _read_owner(folder)
                if _visible(folder_owner, owner):
                    out.append(_load(folder, folder_owner))
            except Exception as e:  # one bad folder must never break the listing
                log.warning("Skipping adapter folder %r: %s", folder.name, e)
        return out

    def names(self, task: str | None = None, owner: str | None = None) -> list[str]:
        return [e.name for e in self.entries(owner) if task is None or e.task == task]

    def get(self, name: str, owner: str | None = None) -> Entry:
        """The adapter `name`, if this owner may see it; otherwise the same error as a missing one."""
        missing = AdapterError(f"No adapter named {name!r} in {'the' if owner is None else 'your'} library.")
        folder = self._folder(name)
        if folder is None or not folder.is_dir():
            raise missing
        try:
            folder_owner = _read_owner(folder)
        except (OSError, ValueError) as e:
            log.warning("Adapter folder %r has an unreadable owner file: %s", folder.name, e)
            raise missing from None
        if not _visible(folder_owner, owner):
            raise missing
        try:
            return _load(folder, folder_owner)
        except AdapterError as e:
            raise AdapterError(f"The adapter {folder.name!r} is damaged and cannot be used: {e}") from None
        except Exception as e:  # details may hold server paths: log them
            log.warning("Adapter folder %r cannot be read: %s", folder.name, e)
            raise AdapterError(f"The adapter {folder.name!r} is damaged and cannot be used.") from None

    def _folder(self, name: Any) -> Path | None:
        """The folder of an adapter called `name`: a plain child of the root, never a path elsewhere."""
        if not isinstance(name, str) or not name or name.startswith(".") or set(name) & {"/", "\\", "\0"}:
            return None
        return self.root / name


def _visible(folder_owner: str | None, owner: str | None) -> bool:
    return owner is None or folder_owner is None or folder_owner == owner
