"""The one data directory: runs, adapters and the converted-model cache live under it."""

from __future__ import annotations

import os
from pathlib import Path


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
