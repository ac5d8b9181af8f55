"""Save and load adapters: `adapter_config.json` plus `adapter_model.safetensors`. No pickle."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._version import __version__
from .atomic import replace_dir
from .config import AdapterConfig
from .errors import AdapterError
from .inject import adapter_parameters, add_adapter, get_record, remove_adapter
from .state import get_state

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def base_identity(model: nn.Module) -> dict[str, Any]:
    """What an adapter must match in a base: its architecture and shape, and (softly) its name."""
    state = get_state(model)
    config = model.config
    return {
        "name_or_path": (state.base_name if state and state.base_name else None)
        or getattr(config, "_name_or_path", None)
        or None,
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_hidden_layers,
    }


def save_adapter(model: nn.Module, name: str, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write adapter `name` to `directory`, replacing it atomically: a crash never leaves half a file."""
    record = get_record(model, name)
    tensors = {k: p.detach().to("cpu", torch.float32).contiguous() for k, p in adapter_parameters(model, name).items()}
    meta = {
        "adapter_core_version": __version__,
        "name": name,
        "task": record.task,
        "labels": record.labels,
        "pooling": record.pooling,
        "bottleneck": record.bottleneck,
        "config": record.config.to_dict(),
        "base": base_identity(model),
        **(extra or {}),
    }
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(tensors, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The saved metadata of an adapter directory, with a clear error when it is not one."""
    path = Path(directory)
    cfg_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise AdapterError(
            f"{str(path)!r} is not a directory. An adapter is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
    for f in (cfg_path, weights_path):
        if not f.is_file():
            raise AdapterError(f"{str(path)!r} is not an adapter: {f.name} is missing.")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{cfg_path} is not valid JSON ({e}).") from None
    for key in ("task", "config", "base"):
        if key not in meta:
            raise AdapterError(f"{cfg_path} has no {key!r} entry; it was not written by Adapter Studio.")
    return meta


def check_compatible(model: nn.Module, meta: dict[str, Any], source: str = "this adapter") -> None:
    base = meta["base"]
    have = base_identity(model)
    diffs = [
        f"{k} {base.get(k)!r} (this base has {have[k]!r})"
        for k in ("model_type", "hidden_size", "num_layers")
        if base.get(k) != have[k]
    ]
    if diffs:
        raise AdapterError(
            f"{source} was trained on base {base.get('name_or_path')!r} and cannot run on "
            f"{have['name_or_path']!r}: it needs " + ", ".join(diffs) + ". Load it onto the base it was trained on."
        )


def load_adapter(
    model: nn.Module, directory: str | os.PathLike, name: str | None = None, trainable: bool = False
) -> str:
    """Load a saved adapter onto `model` under `name` (default: its saved name). Returns the name."""
    meta = read_adapter_config(directory)
    check_compatible(model, meta, source=f"The adapter in {str(directory)!r}")
    name = name or meta.get("name") or Path(directory).name
    try:
        tensors = load_file(Path(directory) / WEIGHTS_FILE)
    except (SafetensorError, OSError) as e:
        raise AdapterError(f"{Path(directory) / WEIGHTS_FILE} is not a readable safetensors file ({e}).") from None
    add_adapter(
        model,
        name,
        AdapterConfig.from_dict(meta["config"]),
        task=meta["task"],
        labels=meta.get("labels"),
        pooling=meta.get("pooling"),
        trainable=trainable,
    )
    try:
        params = adapter_parameters(model, name)
        missing, unexpected = set(params) - set(tensors), set(tensors) - set(params)
        if missing or unexpected:
            raise AdapterError(
                f"{Path(directory) / WEIGHTS_FILE} does not match its config: missing {sorted(missing)[:4]}, "
                f"unexpected {sorted(unexpected)[:4]}."
            )
        with torch.no_grad():
            for key, p in params.items():
                if p.shape != tensors[key].shape:
                    raise AdapterError(
                        f"Tensor {key} has shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}."
                    )
                p.copy_(tensors[key])
    except Exception:
        remove_adapter(model, name)
        raise
    return name
