"""Reading a folder in AdapterHub's format: our metadata, and their tensors under our names.

`read_adapterhub` turns their folder into our metadata plus a map from their tensor names to ours, from
the configs and the safetensors headers alone (no tensor read, nothing allocated); `load_tensors` then
reads the tensors. `load_adapter` and `read_adapter_config` (in `io`) take such a folder through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ._version import __version__
from .adapterhub_format import (
    ADAPTER_PICKLE,
    ADAPTER_WEIGHTS,
    HEAD_CONFIG,
    HEAD_PICKLE,
    HEAD_WEIGHTS,
    layout,
    our_config,
    read_json,
    their_head,
    weights_file,
)
from .errors import AdapterError
from .heads import head_shapes
from .placement import ARCHITECTURES
from .schema import CONFIG_FILE, read_safetensors_header, validate_meta

_PARTS = {"adapter_down.0": "down", "adapter_up": "up"}


@dataclass
class Imported:
    meta: dict[str, Any]  # ours, checked by the schema
    files: list[tuple[Path, dict[str, str]]]  # each safetensors file, and its tensor names -> ours


def read_adapterhub(folder: str | Path, num_layers: int | None = None) -> Imported:
    """Our view of an AdapterHub folder. `num_layers`: the base's depth, when known (else inferred from
    the deepest layer holding the adapter). Raises AdapterError naming what does not map."""
    folder = Path(folder)
    cfg = read_json(folder / CONFIG_FILE, f"{folder.name}/{CONFIG_FILE}")
    model_type, hidden, name = cfg["model_type"], cfg["hidden_size"], cfg["name"]
    lay, stack = layout(model_type), ARCHITECTURES[model_type].stacks[0].layers
    path = weights_file(folder, ADAPTER_WEIGHTS, ADAPTER_PICKLE)
    header = read_safetensors_header(path)
    pattern = re.compile(
        rf"^(?:{re.escape(lay.prefix)}\.)?{re.escape(stack)}\.(\d+)\.({re.escape(lay.attn)}|{re.escape(lay.ffn)})"
        rf"\.adapters\.{re.escape(name)}\.(adapter_down\.0|adapter_up)\.(weight|bias)$"
    )
    mapping, slots = {}, set()
    for key in header:
        match = pattern.match(key)
        if match is None:
            raise AdapterError(f"{path.name}: tensor {key[:100]!r} is not part of a bottleneck adapter named {name!r}.")
        layer, module, part, what = match.groups()
        kind = "attn" if module == lay.attn else "ffn"
        mapping[key] = f"adapters.s0.l{int(layer)}.{kind}.{_PARTS[part]}.{what}"
        slots.add((int(layer), kind))
    if len(set(mapping.values())) != len(mapping):
        raise AdapterError(f"{path.name} holds one adapter tensor twice (with and without the model prefix).")
    r = _bottleneck(header, hidden, path.name)
    their = cfg["config"]
    if isinstance(their.get("reduction_factor"), (int, float)) and int(hidden // their["reduction_factor"]) != r:
        raise AdapterError(
            f"{path.name}: the bottleneck is {r}, not what reduction_factor {their['reduction_factor']} gives."
        )
    config = our_config(their, model_type, r, versioned=bool(cfg.get("version")))
    depth = num_layers or 1 + max(layer for layer, _ in slots)
    _check_slots(config, model_type, slots, depth, header, mapping, hidden, r, path.name)
    meta = {
        "adapter_core_version": __version__,
        "name": name,
        "task": "instruction",  # headless: our task without a head
        "labels": None,
        "pooling": None,
        "bottleneck": r,
        "config": config.to_dict(),
        "base": {
            "name_or_path": cfg.get("model_name") if isinstance(cfg.get("model_name"), str) else None,
            "model_type": model_type,
            "hidden_size": hidden,
            "num_layers": depth,
        },
        "imported_from": {"format": "adapterhub", "version": str(cfg.get("version") or "")[:40]},
    }
    files = [(path, mapping)]
    if (folder / HEAD_CONFIG).is_file():
        files.append(_read_head(folder, meta, hidden))
    elif (folder / HEAD_WEIGHTS).exists() or (folder / HEAD_PICKLE).exists():
        raise AdapterError(f"{folder.name} has head weights but no {HEAD_CONFIG}; it is incomplete.")
    validate_meta(meta, f"{folder.name}/{CONFIG_FILE}")
    return Imported(meta, files)


def _bottleneck(header: dict, hidden: int, what: str) -> int:
    sizes = {shape[0] for key, (_, shape) in header.items() if key.endswith("adapter_down.0.weight")}
    if len(sizes) != 1:
        raise AdapterError(f"{what}: the adapter's down projections have {len(sizes)} different sizes; ours need one.")
    return sizes.pop()


def _check_slots(config, model_type, slots, depth, header, mapping, hidden, r, what) -> None:
    """Exactly the slots and shapes our adapter of `config` would have on a base `depth` layers deep."""
    placed = config.target_modules or {"attn": "", "ffn": ""}
    kinds = [k for k in ("attn", "ffn") if k in config.slots and k in placed]
    want = {(i, k) for i in range(depth) if i not in config.leave_out for k in kinds}
    if slots != want:
        extra, missing = sorted(slots - want), sorted(want - slots)
        raise AdapterError(
            f"{what} does not match its config (leave_out {config.leave_out}): "
            + (f"adapters at {extra[:4]} it does not place; " if extra else "")
            + (f"no adapter at {missing[:4]}." if missing else "")
        )
    shapes = {"down.weight": (r, hidden), "down.bias": (r,), "up.weight": (hidden, r), "up.bias": (hidden,)}
    for key, (_, shape) in header.items():
        if shape != shapes[".".join(mapping[key].rsplit(".", 2)[1:])]:
            raise AdapterError(
                f"{what}: {key} has shape {list(shape)}; bottleneck {r} on hidden {hidden} needs another."
            )
    if len(header) != 4 * len(want):
        raise AdapterError(f"{what}: some adapter slots lack a weight or a bias.")


def _read_head(folder: Path, meta: dict[str, Any], hidden: int) -> tuple[Path, dict[str, str]]:
    head = read_json(folder / HEAD_CONFIG, f"{folder.name}/{HEAD_CONFIG}")
    spec, labels, out = their_head(head, f"{folder.name}/{HEAD_CONFIG}")
    path = weights_file(folder, HEAD_WEIGHTS, HEAD_PICKLE)
    header = read_safetensors_header(path)
    base = f"heads.{head['name']}"
    ours = {f"{base}.1.weight": "head.weight", f"{base}.1.bias": "head.bias"}
    if spec is not None:
        ours = {f"{base}.1.{w}": f"head.dense.{w}" for w in ("weight", "bias")}
        ours |= {f"{base}.{out}.{w}": f"head.out.{w}" for w in ("weight", "bias")}
    want = head_shapes(spec, hidden, len(labels))
    got = {ours.get(k, k): shape for k, (_, shape) in header.items()}
    if got != want:
        raise AdapterError(f"{path.name} does not hold the head its config describes ({len(labels)} labels).")
    meta.update(task="classification", labels=labels, pooling="cls")
    if spec is not None:
        meta["head"] = spec
    return path, ours


def load_tensors(imported: Imported) -> dict[str, torch.Tensor]:
    """The tensors under our names. Call after `read_adapterhub` has checked the headers."""
    out = {}
    for path, mapping in imported.files:
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError):
            raise AdapterError(f"{path.name} is not a readable safetensors file.") from None
        out |= {mapping[k]: v for k, v in tensors.items()}
    return out
