"""What a model card or a published config may show: user strings escaped for Markdown, the base model by
its public hub id (never a server folder), and an adapter_config.json without owner, paths or data files.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .catalog import CATALOG
from .paths import path_tail

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#!|~&${}])")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def md(text: object) -> str:
    """A user string shown literally in Markdown (labels, names): no links, HTML or emphasis."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def public_base(meta: dict[str, Any]) -> str | None:
    """The base model's hub id, if it has one: a catalog name's hub id, or a hub id as given. A local
    folder has none (its path is no one else's business)."""
    for name in (meta.get("base_model"), (meta.get("base") or {}).get("name_or_path")):
        if isinstance(name, str) and name in CATALOG:
            return CATALOG[name].hub_id
        if isinstance(name, str) and _HUB_ID.match(name) and not name.startswith("."):
            return name
    return None


def base_label(meta: dict[str, Any]) -> str:
    """How a card names the base: its hub id, else the last part of its name."""
    base = meta.get("base") or {}
    return public_base(meta) or str(path_tail(meta.get("base_model") or base.get("name_or_path") or "")) or "?"


def public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """An adapter_config.json fit to publish: no owner, no server paths, no data file names."""
    meta = json.loads(json.dumps(meta))
    meta.pop("owner", None)
    if "base_model" in meta:
        meta["base_model"] = _public_name(meta["base_model"])
    meta["base"]["name_or_path"] = _public_name(meta["base"].get("name_or_path"))
    train_config = meta.get("train_config")
    if isinstance(train_config, dict):
        for key, value in list(train_config.items()):
            if key in ("data", "val_data", "init_from", "columns"):
                train_config[key] = None  # user data: the card gives row counts instead
            elif isinstance(value, str) and path_tail(value) != value:
                train_config[key] = path_tail(value)
    return meta


def _public_name(name: Any) -> Any:
    """A base's name as published: a catalog name or hub id as it is, a folder by its last part only."""
    if isinstance(name, str) and (name in CATALOG or (_HUB_ID.match(name) and not name.startswith("."))):
        return name
    return path_tail(name)
