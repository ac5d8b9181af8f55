"""A folder of adapter folders, read: the layout the studio's library and the server share.

Each adapter is a folder named for it, holding its config and weights (and a training curve, for the
studio's Compare). Shared adapters sit under the root. Each owner has a namespace of their own,
`.owners/<key>/` (the key a hash of the owner id), so two visitors may hold the same name and neither
learns of the other's. A folder's `.owner` file (one line) names the visitor who owns it; a folder
without one is shared. Folders of the earlier layout (owned folders under the root) still load, with
their owners; the studio moves them into their namespaces when it starts.

`owner=None` reads as one trusted user who sees everything (a name held in two namespaces resolves to the
first); with an owner, a call sees that owner's adapters plus the shared ones, their own first. A
folder that cannot be read is logged and skipped, never fatal; messages name adapters, never server
paths.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AdapterError
from .io import read_adapter_config
from .schema import (
    CONFIG_FILE,
    CURVE_FILE,
    STATS_FILE,
    WEIGHTS_FILE,
    base_name,
    check_weights_match,
    read_jsonl,
    read_safetensors_header,
)

OWNER_FILE = ".owner"
NAMESPACES = ".owners"
log = logging.getLogger("adapter_core")


def namespace_key(owner: str) -> str:
    """The folder name of `owner`'s namespace: a hash, so an owner id never becomes a path."""
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:24]


@dataclass
class Entry:
    name: str
    path: Path
    meta: dict[str, Any]
    owner: str | None = None  # None: a shared example
    slot: str = ""  # the name it is loaded under on a shared base: its name, made unique per namespace

    def __post_init__(self):
        self.slot = self.slot or self.name

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def base(self) -> str:
        return base_name(self.meta)

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
        """Changes whenever the weights, the config or a router's statistics are replaced, so a served
        copy knows it is stale (its out-of-scope decision lives in the last two)."""
        files = (self.path / f for f in (WEIGHTS_FILE, CONFIG_FILE, STATS_FILE))
        return max(f.stat().st_mtime for f in files if f.exists())


def read_owner(folder: Path) -> str | None:
    """The owner a folder's `.owner` file names; None for a shared folder (no file)."""
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
    namespaced = folder.parent.parent.name == NAMESPACES
    slot = f"{folder.name[:40]}-{folder.parent.name[:16]}" if namespaced else folder.name
    return Entry(folder.name, folder, meta, owner, slot)


class Library:
    """The adapters under `root`, read afresh on every call: another process (a studio, a replica of
    the server) may change the folder at any time."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # Reading ---------------------------------------------------------------------------------------
    def entries(self, owner: str | None = None) -> list[Entry]:
        """Every readable adapter this owner may see, by name (one per name: the caller's own first).
        Never raises for a bad folder."""
        found: dict[str, Entry] = {}
        for home in self._homes(owner):
            for folder in _children(home):
                if folder.name in found:
                    continue
                try:
                    if not folder.is_dir():
                        continue
                    folder_owner = read_owner(folder)
                    if _visible(folder_owner, owner):
                        found[folder.name] = _load(folder, folder_owner)
                except Exception as e:  # one bad folder must never break the listing
                    log.warning("Skipping adapter folder %r: %s", folder.name, e)
        return [found[name] for name in sorted(found)]

    def home(self, owner: str | None) -> Path:
        """The folder `owner`'s adapters are written to: their namespace, or the root for shared ones."""
        return self.root if owner is None else self.root / NAMESPACES / namespace_key(owner)

    def _homes(self, owner: str | None) -> list[Path]:
        """Where this owner's view looks, in order: their namespace, then the root; for None, the root
        and then every namespace."""
        if owner is not None:
            return [self.home(owner), self.root]
        return [self.root, *_children(self.root / NAMESPACES)]

    def names(self, task: str | None = None, owner: str | None = None) -> list[str]:
        return [e.name for e in self.entries(owner) if task is None or e.task == task]

    def get(self, name: str, owner: str | None = None) -> Entry:
        """The adapter `name`, if this owner may see it; otherwise the same error as a missing one."""
        missing = AdapterError(f"No adapter named {name!r} in {'the' if owner is None else 'your'} library.")
        folder, folder_owner = self._find(name, owner)
        if folder is None:
            raise missing
        try:
            return _load(folder, folder_owner)
        except AdapterError as e:
            raise AdapterError(f"The adapter {folder.name!r} is damaged and cannot be used: {e}") from None
        except Exception as e:  # details may hold server paths: log them
            log.warning("Adapter folder %r cannot be read: %s", folder.name, e)
            raise AdapterError(f"The adapter {folder.name!r} is damaged and cannot be used.") from None

    def _find(self, name: Any, owner: str | None) -> tuple[Path | None, str | None]:
        """The folder of the adapter `name` in this owner's view, and its owner; (None, None) if none."""
        if not _plain(name):
            return None, None
        for home in self._homes(owner):
            folder = home / name
            if not folder.is_dir():
                continue
            try:
                folder_owner = read_owner(folder)
            except (OSError, ValueError) as e:
                log.warning("Adapter folder %r has an unreadable owner file: %s", folder.name, e)
                continue
            if _visible(folder_owner, owner):
                return folder, folder_owner
        return None, None

    def _folder(self, name: Any, home: Path | None = None) -> Path | None:
        """The folder `name` would have in `home` (default: the root): a plain child, never a path elsewhere."""
        return (home or self.root) / name if _plain(name) else None


def _plain(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and not name.startswith(".") and not set(name) & {"/", "\\", "\0"}


def _children(folder: Path) -> list[Path]:
    """The visible children of `folder`, by name; none if it cannot be listed (logged unless missing)."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("The adapter library cannot be listed: %s", e)
        return []


def _visible(folder_owner: str | None, owner: str | None) -> bool:
    return owner is None or folder_owner is None or folder_owner == owner
