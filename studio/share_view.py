"""Library-tab sharing, as plain handlers over `sharing`: the model card, Hub push and pull, AdapterHub export
and hub packs. Owner-scoped like every handler; `sharing` does the checks."""

from __future__ import annotations

import re
from pathlib import Path

from adapter_core import AdapterError

from . import sharing
from .service import Studio
from .text import md

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def card_preview(studio: Studio, name: str | None, owner: str | None) -> str:
    """The card an adapter would be pushed with, as the tab shows it: without the front matter and the
    picture (drawn only when pushed)."""
    if not name:
        return ""
    text = _FRONT_MATTER.sub("", sharing.card(studio, name, owner), count=1)
    return "\n".join(line for line in text.splitlines() if not line.startswith("![")).strip()


def push(studio: Studio, name: str, repo: str, private: bool, token: str | None, owner: str | None) -> str:
    if not name:
        raise AdapterError("Pick an adapter to push.")
    repo = _repo(repo, "push to")
    sharing.push(studio, name, repo, token=token, owner=owner, private=bool(private))
    return f"Pushed {md(name)} to [{md(repo)}](https://huggingface.co/{repo}) with its model card."


def push_pack(studio: Studio, router: str, repo: str, private: bool, token: str | None, owner: str | None) -> str:
    if not router:
        raise AdapterError("Pick the router (a classification adapter) to push with its departments.")
    repo = _repo(repo, "push to")
    sharing.push_pack(studio, router, repo, token=token, owner=owner, private=bool(private))
    return (
        f"Pushed the hub pack of {md(router)} to [{md(repo)}](https://huggingface.co/{repo}): its card lists the "
        f"routes and the `serve` command that runs them."
    )


def pull(studio: Studio, repo: str, token: str | None, owner: str | None) -> tuple[str, str]:
    """(the first new library name, a message)."""
    text = str(repo or "").strip().removeprefix("hf://")
    if not text:
        raise AdapterError("Type the Hub repository to pull, as owner/name.")
    entries = sharing.pull(studio, text, owner=owner, token=token)
    if len(entries) == 1:
        return entries[0].name, f"Pulled {md(text)} into your library as {md(entries[0].name)}, checked like an upload."
    names = ", ".join(md(e.name) for e in entries)
    return entries[0].name, f"Pulled the pack {md(text)} into your library: {names}, each checked like an upload."


def export_adapterhub(studio: Studio, name: str, owner: str | None) -> tuple[Path, str]:
    """(the zip, a message)."""
    if not name:
        raise AdapterError("Pick an adapter to export.")
    path, note = sharing.export_adapterhub(studio, name, owner)
    load = "load it with `model.load_adapter(folder, use_safetensors=True)`"
    return path, f"Exported {md(name)} in AdapterHub's format: unzip it and {load}." + (f" {md(note)}" if note else "")


def pack(studio: Studio, router: str, owner: str | None) -> Path:
    if not router:
        raise AdapterError("Pick the router (a classification adapter) to pack with its departments.")
    return sharing.pack(studio, router, owner)


def _repo(text: str, what: str) -> str:
    repo = str(text or "").strip().removeprefix("hf://")
    if not _REPO.match(repo) or ".." in repo:
        raise AdapterError(f"Type the Hub repository to {what} as owner/name (letters, digits, '.', '_', '-').")
    return repo
