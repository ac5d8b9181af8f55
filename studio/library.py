"""The studio's adapter library: one folder per named adapter under `$ADAPTER_STUDIO_HOME/adapters`, the
shared ones at its root and each visitor's in a namespace of their own (see `adapter_core.library`).

Reading (listing, owners, visibility) is `adapter_core.library.Library`, shared with the server. This
adds the writing: finished runs publish their adapter here; users rename, delete, download (zip) and
upload them. A caller edits only its own adapters; `owner=None` (local mode) edits everything. Names
are unique within what a caller sees (their own and the shared ones), never across visitors, so no
message ever tells one visitor of another's names.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Any

from adapter_core import (
    CONFIG_FILE,
    CURVE_FILE,
    NAMESPACES,
    OWNER_FILE,
    STATS_FILE,
    WEIGHTS_FILE,
    AdapterError,
    Entry,
    read_adapter_config,
    read_owner,
    replace_dir,
    studio_home,
    write_json_atomic,
)
from adapter_core import Library as FolderLibrary

from .uploads import (
    ALLOWED_UPLOADS,
    MAX_NAME,
    check_name,
    clean_meta,
    safe_name,
    stage_upload,
)

log = logging.getLogger("adapter_core")  # the library's own logger: one place to look

__all__ = ["ALLOWED_UPLOADS", "CURVE_FILE", "OWNER_FILE", "Entry", "Library", "check_name", "safe_name"]


class Library(FolderLibrary):
    def __init__(self, home: str | Path | None = None):
        super().__init__(Path(home or studio_home()) / "adapters")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.recover()

    def usage(self, owner: str) -> tuple[int, int]:
        """How many adapters `owner` has, and their bytes on disk."""
        own = [e for e in self.entries(owner) if e.owner == owner]
        return len(own), sum(f.stat().st_size for e in own for f in e.path.iterdir() if f.is_file())

    def total_usage(self) -> tuple[int, int]:
        """Adapter folders of every owner together, and their bytes on disk (without reading any)."""
        homes = [self.root, *(p for p in _subfolders(self.root / NAMESPACES))]
        folders = [f for home in homes for f in _subfolders(home)]
        return len(folders), sum(_size(f) for f in folders)

    # Writing ---------------------------------------------------------------------------------------
    def publish(
        self, source: Path, name: str, owner: str | None = None, curve: Path | None = None, replaces: str | None = None
    ) -> Entry:
        """Copy an adapter folder (and its run's `curve`, a metrics.jsonl) into the library as `name`
        (sanitised, made unique) for `owner` (None: shared), atomically. `replaces`: an entry of the
        owner's that this adapter supersedes (a resumed run's earlier save), overwritten if still there."""
        source = Path(source)
        owner = _check_owner(owner)
        meta = read_adapter_config(source)
        curve = Path(curve) if curve else source / CURVE_FILE
        with self._lock:
            target = self.get(replaces, owner).path if self._owns(replaces, owner) else None
            if target is None:
                name = self._unique(safe_name(name), owner)
                target = self.home(owner) / name
            name = target.name
            staging = Path(tempfile.mkdtemp(prefix=".publish.", dir=self.root))
            try:
                shutil.copyfile(source / WEIGHTS_FILE, staging / WEIGHTS_FILE)
                if (source / STATS_FILE).is_file():  # a router's out-of-scope statistics go with it
                    shutil.copyfile(source / STATS_FILE, staging / STATS_FILE)
                write_json_atomic(staging / CONFIG_FILE, clean_meta(meta, name))
                if curve.is_file():
                    shutil.copyfile(curve, staging / CURVE_FILE)
                if owner is not None:
                    (staging / OWNER_FILE).write_text(owner + "\n", encoding="utf-8")
                target.parent.mkdir(parents=True, exist_ok=True)
                replace_dir(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.get(name, owner)

    def rename(self, old: str, new: str, owner: str | None = None) -> Entry:
        """Rename an adapter. Two moves (the folder, then the name inside its config), journaled so
        that `recover()` finishes a rename cut short by a crash."""
        new = check_name(new)
        with self._lock:
            entry = self._editable(old, owner)
            if new == entry.name:
                return entry
            home = entry.path.parent  # its namespace (or the root): a rename never moves it between them
            clash = self._clash(new, owner, home)
            if clash:
                raise AdapterError(clash)
            journal = home / f".rename-{new}.json"
            write_json_atomic(journal, {"old": entry.name, "new": new})
            os.rename(entry.path, home / new)
            self._set_name(home / new, new)
            journal.unlink()
        return self.get(new, owner)

    def delete(self, name: str, owner: str | None = None) -> None:
        with self._lock:
            entry = self._editable(name, owner)
            trash = entry.path.parent / f".trash-{uuid.uuid4().hex}"
            os.rename(entry.path, trash)  # gone from the listing at once; a crash leaves only trash
            shutil.rmtree(trash, ignore_errors=True)

    def zip(self, name: str, out_dir: Path, owner: str | None = None) -> Path:
        """A zip of the adapter's files for download (a router's statistics too); its config holds no owner
        and no server path."""
        entry = self.get(name, owner)
        target = Path(out_dir) / f"{entry.name}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            meta = clean_meta(entry.meta, entry.name, for_download=True)
            z.writestr(f"{entry.name}/{CONFIG_FILE}", json.dumps(meta, indent=2))
            z.write(entry.path / WEIGHTS_FILE, f"{entry.name}/{WEIGHTS_FILE}")
            if (entry.path / STATS_FILE).is_file():  # a router's out-of-scope statistics: its decision needs them
                z.write(entry.path / STATS_FILE, f"{entry.name}/{STATS_FILE}")
        return target

    def upload(
        self,
        files: list[str | Path],
        owner: str | None = None,
        name: str | None = None,
        limits: Any = None,
        max_bytes: int | None = None,
    ) -> Entry:
        """Add an adapter from its files (a router's statistics too), or a zip holding them, for `owner`.
        Nothing else is accepted; see `studio.uploads.stage_upload` for the checks, `limits` (a Policy, or
        None) and `max_bytes` (the room left in the owner's quota, which the unpacked files must fit)."""
        chosen = check_name(name) if name and str(name).strip() else None
        staging = Path(tempfile.mkdtemp(prefix=".upload.", dir=self.root))
        try:
            meta = stage_upload(files, staging, limits, max_bytes)
            if chosen is None:
                try:
                    chosen = safe_name(meta.get("name") or "uploaded")
                except AdapterError:
                    chosen = "uploaded"
            return self.publish(staging, chosen, owner=owner)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def recover(self) -> list[str]:
        """Finish (or roll back) renames a crash cut short, and clear half-deleted folders. Returns the
        names of the renames it finished."""
        finished = []
        with self._lock:
            homes = [self.root, *_subfolders(self.root / NAMESPACES)]
            for home in homes:
                finished += self._recover_renames(home)
                for trash in home.glob(".trash-*"):
                    shutil.rmtree(trash, ignore_errors=True)
            self._migrate()
        return finished

    def _recover_renames(self, home: Path) -> list[str]:
        finished = []
        for journal in sorted(home.glob(".rename-*.json")):
            try:
                data = json.loads(journal.read_text(encoding="utf-8"))
                old, new = self._folder(data["old"], home), self._folder(data["new"], home)
                if old is not None and new is not None and new.is_dir() and not old.exists():
                    self._set_name(new, new.name)  # the folder moved; finish the rename
                    finished.append(new.name)
                    log.warning("Finished renaming adapter %r to %r after an interruption.", old.name, new.name)
                journal.unlink()  # otherwise the folder never moved: nothing to undo
            except Exception as e:  # recovery must never stop the studio
                log.error("Could not recover the interrupted rename %r: %s", journal.name, e)
        return finished

    def _migrate(self) -> None:
        """Move owned folders of the earlier layout (under the root) into their owners' namespaces. One
        whose name the owner already holds there stays where it is (it still loads, behind theirs)."""
        for folder in _subfolders(self.root):
            try:
                owner = read_owner(folder)
                if owner is None:
                    continue
                home = self.home(owner)
                if (home / folder.name).exists():
                    continue
                home.mkdir(parents=True, exist_ok=True)
                os.rename(folder, home / folder.name)
            except Exception as e:  # an unreadable folder stays as it is, skipped by the listing
                log.warning("Could not move adapter folder %r into its owner's namespace: %s", folder.name, e)

    # Helpers ---------------------------------------------------------------------------------------
    def _editable(self, name: str, owner: str | None) -> Entry:
        entry = self.get(name, owner)
        if owner is not None and entry.owner != owner:
            raise AdapterError(
                f"{entry.name!r} is a shared example and read-only; download it and upload a copy to change it."
            )
        return entry

    def _owns(self, name: str | None, owner: str | None) -> bool:
        try:
            return bool(name) and self.get(name, owner).owner == owner
        except AdapterError:
            return False

    def _unique(self, name: str, owner: str | None) -> str:
        """`name`, or `name-2`, ... : the first that `owner` does not see already (their own or a shared
        one) and that is free in their namespace. Other visitors' names never count."""
        candidate, n = name, 1
        while (self.home(owner) / candidate).exists() or (owner is not None and self._taken(candidate, owner)):
            n += 1
            candidate = f"{name[: MAX_NAME - len(str(n)) - 1]}-{n}"
        return candidate

    def _taken(self, name: str, owner: str) -> bool:
        """Whether `owner` already sees an adapter called `name` (their own, or a shared one)."""
        return self._find(name, owner)[0] is not None

    def _clash(self, name: str, owner: str | None, home: Path) -> str | None:
        """Why `owner` cannot call an adapter of `home` `name`, if they cannot: a name they see already.
        Another visitor's names are not in their view, so they never clash."""
        if owner is None:
            return f"An adapter named {name!r} already exists; pick another name." if (home / name).exists() else None
        folder, folder_owner = self._find(name, owner)
        if (home / name).exists() or (folder is not None and folder_owner == owner):
            return f"You already have an adapter named {name!r}; pick another name."
        if folder is not None:
            return f"{name!r} is the name of a shared example; pick another name."
        return None

    @staticmethod
    def _set_name(folder: Path, name: str) -> None:
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if meta.get("name") != name:
            meta["name"] = name
            write_json_atomic(folder / CONFIG_FILE, meta)


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return []


def _size(folder: Path) -> int:
    try:
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    except OSError:
        return 0


def _check_owner(owner: str | None) -> str | None:
    if owner is None:
        return None
    text = str(owner).strip()
    if not text or len(text) > 256 or any(c in text for c in "\r\n\0"):
        raise AdapterError("An owner id is one line of at most 256 characters.")
    return text
