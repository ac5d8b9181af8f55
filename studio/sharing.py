"""Sharing at the trust boundary, without gradio: model cards, Hub push and pull, AdapterHub export and hub
packs for the studio's callers. Every function takes the caller's `owner` and applies the policy, as
`service.Studio` does for the rest: a visitor pushes only their own adapters with their own token, and a
pull is checked like an upload and counted against their quota: from the sizes the Hub declares, before
anything is downloaded, one pull per visitor at a time and a few for the whole studio. In public mode,
Hub pulls and pushes need a Hugging Face sign-in (see `Policy.check_heavy`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapter_core import AdapterError
from adapter_core.share import Room, adapter_folders, export_problems, folder_card, pull_named, push_adapter
from adapter_core.share import export_adapterhub as write_adapterhub
from adapter_core.share import pack as write_pack

from .library import Entry, safe_name
from .quotas import check_library_room, library_room, owner_slots
from .service import Studio
from .uploads import ADAPTER_MEMBERS


def card(studio: Studio, name: str, owner: str | None = None) -> str:
    """The model card adapter `name` would be pushed with: no server path, no data file name."""
    return folder_card(studio.library.get(name, owner=studio.owner(owner)).path)


def push(
    studio: Studio, name: str, repo_id: str, token: str | None = None, owner: str | None = None, private: bool = False
) -> str:
    """Push the caller's own adapter to the Hub. In public mode only with the visitor's own token (their
    sign-in), never the server's; shared examples are not theirs to push. Returns the commit URL."""
    owner = studio.owner(owner)
    studio.policy.check_heavy(owner, "Pushing to the Hub")
    entry = _pushable(studio, name, token, owner)
    return push_adapter(entry.path, str(repo_id or "").strip(), token=token or None, private=private)


def push_pack(
    studio: Studio, router: str, repo_id: str, token: str | None = None, owner: str | None = None, private: bool = False
) -> str:
    """Push router `router` and its department adapters as one hub pack, under the rules of `push`
    for each of them. Returns the commit URL."""
    owner = studio.owner(owner)
    studio.policy.check_heavy(owner, "Pushing to the Hub")
    entry = _pushable(studio, router, token, owner)
    repo_id = str(repo_id or "").strip()
    with tempfile.TemporaryDirectory(prefix="adapter-studio-pack-") as tmp:
        out = write_pack(
            entry.name, studio.library.root, Path(tmp) / f"{entry.name}-pack", repo_id=repo_id, owner=owner
        )
        for folder in adapter_folders(out):
            _pushable(studio, folder.name, token, owner)
        return push_adapter(out, repo_id, token=token or None, private=private)


def _pushable(studio: Studio, name: str, token: str | None, owner: str | None) -> Entry:
    entry = studio.library.get(name, owner=owner)
    if studio.policy.public and not token:
        raise AdapterError("Sign in with Hugging Face to push: the studio pushes with your own account only.")
    if owner is not None and entry.owner != owner:
        raise AdapterError(f"{entry.name!r} is a shared example, not yours; push your own adapters.")
    return entry


def pull(studio: Studio, ref: str, owner: str | None = None, token: str | None = None) -> list[Entry]:
    """The adapters of a Hub repo (one, or a whole pack) into the caller's library, each checked as an
    upload is, counted together against their quota, and all or none of them kept. In public mode they
    go through a private cache that is deleted afterwards."""
    owner = studio.owner(owner)
    public = studio.policy.public
    studio.policy.check_heavy(owner, "Pulling from the Hub")
    room = None
    if owner is not None:
        check_library_room(studio, owner)  # a full library is refused before the Hub is asked anything
        slots = studio.policy.max_adapters_per_owner - studio.library.usage(owner)[0] - owner_slots(studio, owner)[0]
        room = Room(adapters=slots, bytes=library_room(studio, owner))
    with _one_pull(studio, owner), tempfile.TemporaryDirectory(prefix="adapter-studio-pull-") as cache:
        pulled = pull_named(
            ref,
            token=token or (False if public else None),
            cache=cache if public else None,
            limits=studio.policy,
            room=room,
        )
        files = [[folder / f for f in ADAPTER_MEMBERS if (folder / f).is_file()] for _, folder in pulled]
        if owner is not None:
            size = sum(f.stat().st_size for pair in files for f in pair)
            check_library_room(studio, owner, incoming=size, adapters=len(pulled))
        entries: list[Entry] = []
        try:
            for (name, _), pair in zip(pulled, files, strict=True):
                entries.append(studio.library.upload(pair, owner=owner, name=safe_name(name), limits=studio.policy))
        except BaseException:
            for entry in entries:
                studio.library.delete(entry.name, owner=owner)
            raise
        return entries


@contextmanager
def _one_pull(studio: Studio, owner: str | None) -> Iterator[None]:
    """One pull per visitor at a time, and at most `max_pulls` for the whole studio."""
    pulling = studio.pulling
    with studio.lock:
        if owner in pulling:
            raise AdapterError("You already have a pull in progress; wait for it to finish.")
        if len(pulling) >= studio.policy.max_pulls:
            raise AdapterError(
                f"The studio is pulling {len(pulling)} repositories for other visitors; try again in a minute."
            )
        pulling.add(owner)
    try:
        yield
    finally:
        with studio.lock:
            pulling.discard(owner)


def export_adapterhub(studio: Studio, name: str, owner: str | None = None) -> tuple[Path, str | None]:
    """A zip of adapter `name` in AdapterHub's format, in a fresh folder of the downloads area, and a
    note when its head had to stay behind (their head reads the first token; ours may pool the mean)."""
    owner = studio.owner(owner)
    entry = studio.library.get(name, owner=owner)
    head_problems = [] if export_problems(entry.meta, with_head=False) else export_problems(entry.meta)
    out = studio.download_folder(owner) / f"{entry.name}-adapterhub"
    write_adapterhub(entry.path, out, with_head=not head_problems)
    note = f"The adapter alone, without its head: {head_problems[0]}." if head_problems else None
    return studio.kept(_zipped(out)), note


def pack(studio: Studio, router: str, owner: str | None = None) -> Path:
    """A zip of a hub pack: router `router` and the caller's department adapters, with its card."""
    owner = studio.owner(owner)
    entry = studio.library.get(router, owner=owner)
    out = write_pack(entry.name, studio.library.root, studio.download_folder(owner) / f"{entry.name}-pack", owner=owner)
    return studio.kept(_zipped(out))


def _zipped(folder: Path) -> Path:
    """A zip of `folder` beside it; the folder itself goes (only the zip is downloaded)."""
    archive = Path(shutil.make_archive(str(folder), "zip", folder.parent, folder.name))
    shutil.rmtree(folder, ignore_errors=True)
    return archive
