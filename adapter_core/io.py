"""Save and load adapters: `adapter_config.json` plus `adapter_model.safetensors`. No pickle.

Files from strangers are checked before anything is allocated: the config against a schema, and the
safetensors header (read by hand, tensors untouched) against what the config would allocate. Messages
name files and folders by their names only, never by a server path.

Saving writes a model card (`README.md`, `curve.png`: `card`) beside the two files. Loading also takes a
Hub reference (`hf://owner/repo`, or `owner/repo` when no such local folder exists), pulled and checked
first (`pull`), and a folder in AdapterHub's format (`adapterhub_read`).
"""

from __future__ import annotations

import json
import logging
import math
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
from .adapterhub_format import is_adapterhub_dir
from .adapterhub_read import load_tensors, read_adapterhub
from .atomic import replace_dir
from .card import read_curve, write_card
from .config import AdapterConfig
from .errors import AdapterError
from .heads import head_shapes, head_spec, make_head
from .inject import HEADS_ATTR, adapter_parameters, add_adapter, count_adapter_params, get_record, remove_adapter
from .out_of_scope import LEGACY_SCORE, STATS_SCORES, Detector
from .paths import path_tail
from .pull import resolve_source
from .schema import (
    CONFIG_FILE,
    DTYPE_BYTES,
    MAX_CONFIG_BYTES,
    MAX_HEADER_BYTES,
    STATS_FILE,
    WEIGHTS_FILE,
    read_meta_file,
    read_safetensors_header,
    read_stats,
    validate_meta,
)
from .state import get_state

log = logging.getLogger("adapter_core")

__all__ = [
    "CONFIG_FILE",
    "DTYPE_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_HEADER_BYTES",
    "STATS_FILE",
    "WEIGHTS_FILE",
    "base_identity",
    "check_compatible",
    "load_adapter",
    "path_tail",
    "read_adapter_config",
    "read_meta_file",
    "read_safetensors_header",
    "save_adapter",
    "validate_meta",
]


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
    heads = getattr(model, HEADS_ATTR, None)
    spec = head_spec(heads[name]) if heads is not None and name in heads else None
    meta = {
        "adapter_core_version": __version__,
        "name": name,
        "task": record.task,
        "labels": record.labels,
        "pooling": record.pooling,
        "bottleneck": record.bottleneck,
        "config": record.config.to_dict(),
        "base": base_identity(model),
        **({"head": spec} if spec else {}),
        **(extra or {}),
    }
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(tensors, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        if record.detector is not None and record.detector.stats is not None:
            save_file(record.detector.stats.tensors(), staging / STATS_FILE, metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        _write_card(staging, target, meta)
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_card(staging: Path, target: Path, meta: dict[str, Any]) -> None:
    """The model card beside the weights. A card that cannot be drawn never costs the weights: log it."""
    try:
        write_card(staging, meta, events=read_curve(target))
    except Exception as e:
        log.warning("The model card of %r could not be written: %s", target.name, e)


def _label(path: Path) -> str:
    """How messages name an adapter folder: its name (and its parent's for a run's `adapter/`), no path."""
    return f"{path.parent.name}/{path.name}" if path.name == "adapter" and path.parent.name else path.name


def adapter_path(path: str | os.PathLike) -> Path:
    """An adapter folder, or a run folder holding one in `adapter/`."""
    path = Path(path)
    if (path / "adapter" / CONFIG_FILE).is_file():
        return path / "adapter"
    return path


def read_adapter_config(directory: str | os.PathLike, allow_pickle: bool = True) -> dict[str, Any]:
    """The saved metadata of an adapter directory, checked, with a clear error when it is not one. A
    folder in AdapterHub's format reads as the metadata it imports as (`allow_pickle`: as `load_adapter`);
    a Hub reference is pulled first."""
    path = resolve_source(directory)
    if not path.is_dir():
        raise AdapterError(
            f"{_label(path)!r} is not a folder. An adapter is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
    if is_adapterhub_dir(path):
        return read_adapterhub(path, allow_pickle=allow_pickle).meta
    for f in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / f).is_file():
            raise AdapterError(f"{_label(path)!r} is not an adapter: {f} is missing.")
    return read_meta_file(path / CONFIG_FILE, source=f"{_label(path)}/{CONFIG_FILE}")


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
            f"{source} was trained on base {path_tail(base.get('name_or_path'))!r} and cannot run on "
            f"{path_tail(have['name_or_path'])!r}: it needs "
            + ", ".join(diffs)
            + ". Load it onto the base it was trained on."
        )


def _check_header(model: nn.Module, meta: dict[str, Any], header: dict, label: str) -> None:
    """The weights file must hold exactly what the config would allocate on `model`, checked before
    anything is allocated: a config claiming a huge bottleneck or a million labels is refused here."""
    labels = meta.get("labels") or []
    num_labels = len(labels) if meta["task"] == "classification" else 0
    config = AdapterConfig.from_dict(meta["config"])
    head = head_shapes(meta.get("head"), model.config.hidden_size, num_labels) if num_labels else {}
    expected = count_adapter_params(model, config) + sum(math.prod(shape) for shape in head.values())
    have = sum(math.prod(shape) for _, shape in header.values())
    if have != expected:
        raise AdapterError(
            f"{label}: {WEIGHTS_FILE} holds {have:,} weights but its config (bottleneck "
            f"{config.bottleneck_for(model.config.hidden_size):,}, {num_labels:,} labels) needs {expected:,} on this "
            "base. The two files do not belong together."
        )
    got = {k: shape for k, (_, shape) in header.items() if k.startswith("head.")}
    if got != head:
        rows = (got.get("head.weight") or got.get("head.out.weight") or (0,))[0]
        problem = (
            f"has {rows:,} rows"
            if rows != num_labels
            else f"is not the {(meta.get('head') or {}).get('type', 'linear')} head it names"
        )
        raise AdapterError(f"{label}: the head {problem} but the config lists {num_labels:,} labels.")


def load_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    name: str | None = None,
    trainable: bool = False,
    allow_pickle: bool = True,
) -> str:
    """Load a saved adapter onto `model` under `name` (default: its saved name). Returns the name.

    `directory`: an adapter folder, a folder in AdapterHub's format, or a Hub reference (`hf://owner/repo`
    or `owner/repo`), pulled into the Hugging Face cache and checked like an upload. An AdapterHub folder
    saved as a pickle (`pytorch_adapter.bin`) loads through `torch.load(weights_only=True)` unless
    `allow_pickle=False` or the process is a public studio, where it is refused."""
    directory = resolve_source(directory)
    label = _label(directory)
    if is_adapterhub_dir(directory):
        imported = read_adapterhub(directory, num_layers=model.config.num_hidden_layers, allow_pickle=allow_pickle)
        meta = imported.meta
        check_compatible(model, meta, source=f"The AdapterHub adapter {label!r}")
        tensors = load_tensors(imported)
    else:
        meta = read_adapter_config(directory)
        check_compatible(model, meta, source=f"The adapter {label!r}")
        _check_header(model, meta, read_safetensors_header(directory / WEIGHTS_FILE), label)
        tensors = _read_tensors(directory / WEIGHTS_FILE, label)
    detector = read_detector(directory, meta, model.config.hidden_size, label)
    name = _attach(model, meta, tensors, name or meta.get("name") or directory.name, trainable, label)
    get_record(model, name).detector = detector
    return name


def _read_tensors(path: Path, label: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except SafetensorError as e:
        raise AdapterError(f"{label}: {path.name} is not a readable safetensors file ({e}).") from None
    except OSError as e:
        raise AdapterError(f"{label}: {path.name} could not be read ({e.strerror}).") from None


def read_detector(directory: Path, meta: dict[str, Any], hidden: int, label: str) -> Detector | None:
    """A router's out-of-scope decision from its config and `STATS_FILE` (checked before it is read).
    An adapter saved before scores had names decides on its top-class confidence; a copy that lost its
    statistics file falls back on the msp threshold calibrated beside its own score."""
    section = meta.get("out_of_scope") if meta["task"] == "classification" else None
    if not section:
        return None
    score = section.get("score")
    if score is None:  # the threshold is a confidence: in scope at or above it
        return Detector(LEGACY_SCORE, 1 - section["threshold"])
    stats = None
    path = directory / STATS_FILE
    if path.is_file():
        try:
            stats = read_stats(path, hidden, len(meta["labels"]))
        except AdapterError as e:
            raise AdapterError(f"{label}: {e}") from None
    if score in STATS_SCORES and (stats is None or not stats.supports(score)):
        fallback = section.get("msp_threshold")
        lacks = f"has no {STATS_FILE}" if stats is None else f"'s {STATS_FILE} lacks what {score} needs"
        log.warning("%s%s: it decides out of scope on msp instead of %s.", label, lacks, score)
        return Detector("msp", fallback) if fallback is not None else None
    return Detector(score, section["threshold"], stats)


def _attach(
    model: nn.Module, meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str, trainable: bool, label: str
) -> str:
    """Add the adapter `meta` describes under `name` and copy `tensors` into it (checked key by key)."""
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
        if meta.get("head") and meta["task"] == "classification":
            heads = getattr(model, HEADS_ATTR)
            old = heads[name]
            heads[name] = (
                make_head(meta["head"], model.config.hidden_size, len(meta["labels"]))
                .to(old.weight.device, old.weight.dtype)
                .train(old.training)
                .requires_grad_(trainable)
            )
        params = adapter_parameters(model, name)
        missing, unexpected = set(params) - set(tensors), set(tensors) - set(params)
        if missing or unexpected:
            raise AdapterError(
                f"{label}: {WEIGHTS_FILE} does not match its config: missing {sorted(missing)[:4]}, "
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
