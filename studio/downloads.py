"""The downloads area: a fresh folder for every download, export or pack zip, bounded on disk.

Each zip gets its own folder (so two visitors' zips of one name never meet), named for its owner's
share of the area. A folder goes after an hour, when its owner has more than their quota of folders
(their oldest first), and when the whole area is over the studio's cap (the oldest first, whoever's):
a visitor who asks for zips again and again pushes out their own before anyone else's.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from .policy import Policy

DOWNLOADS = Path(tempfile.gettempdir()) / "adapter-studio-downloads"
DOWNLOAD_TTL_S = 3600


def download_folder(policy: Policy, owner: str | None = None) -> Path:
    """A fresh folder in the downloads area for one zip of `owner`'s; older ones are removed first."""
    prefix = _prefix(owner)
    folders = _folders()
    cutoff = time.time() - DOWNLOAD_TTL_S
    for folder, mtime in folders:
        if mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
    mine = [f for f, mtime in folders if mtime >= cutoff and f.name.startswith(prefix + "-")]
    for folder in mine[: max(0, len(mine) - policy.max_downloads_per_owner + 1)]:
        shutil.rmtree(folder, ignore_errors=True)
    folder = DOWNLOADS / f"{prefix}-{secrets.token_hex(12)}"
    folder.mkdir(parents=True)
    return folder


def trim_downloads(policy: Policy, keep: Path) -> None:
    """Remove folders while the area is over its cap, never `keep`'s (the one just written): its owner's
    older ones first, then everyone's oldest first."""
    keep = keep if keep.parent == DOWNLOADS else next((p for p in keep.parents if p.parent == DOWNLOADS), keep)
    prefix = keep.name.split("-", 1)[0] + "-"
    folders = [(f, folder_bytes(f)) for f, _ in _folders()]
    total = sum(size for _, size in folders)
    folders.sort(key=lambda pair: not pair[0].name.startswith(prefix))  # stable: oldest first within each
    for folder, size in folders:
        if total <= policy.max_downloads_bytes:
            break
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)
            total -= size


def _prefix(owner: str | None) -> str:
    return hashlib.sha256(str(owner).encode()).hexdigest()[:12] if owner is not None else "local"


def _folders() -> list[tuple[Path, float]]:
    """The area's folders with their times, oldest first."""
    out = []
    try:
        for folder in DOWNLOADS.iterdir():
            try:
                out.append((folder, folder.stat().st_mtime))
            except OSError:
                continue
    except OSError:
        return []
    return sorted(out, key=lambda pair: pair[1])


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under `folder` (links not followed)."""
    total = 0
    for path in Path(folder).rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue
    return total
