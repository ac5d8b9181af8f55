"""The one data directory (runs, adapters and the converted-model cache live under it), and paths kept out
of messages."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any


def studio_home() -> Path:
    """`$ADAPTER_STUDIO_HOME`, or `~/.adapter_studio`. Spaces users point it at a mounted bucket."""
    home = Path(os.environ.get("ADAPTER_STUDIO_HOME") or Path.home() / ".adapter_studio").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def model_cache() -> Path:
    """Converted base models (the GGUF dequantised once): `$ADAPTER_STUDIO_CACHE` or `<home>/models`."""
    cache = os.environ.get("ADAPTER_STUDIO_CACHE")
    path = Path(cache).expanduser() if cache else studio_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def path_tail(name: Any) -> Any:
    """A model's name without the server folders around it: a path (Unix or Windows, absolute, `~` or
    relative-dotted) keeps its last part; hub ids `org/name`, plain names and non-strings stay as they are."""
    if isinstance(name, str) and (os.path.isabs(name) or name.startswith(("~", ".", "\\")) or ":\\" in name):
        return PurePosixPath(name.replace("\\", "/")).name
    return name
