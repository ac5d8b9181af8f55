"""Reading a folder in AdapterHub's format: our metadata, and their tensors under our names.

`read_adapterhub` turns their folder into our metadata plus a map from their tensor names to ours, from
the configs and the safetensors headers alone (no tensor read, nothing allocated); `load_tensors` then
reads the tensors. `load_adapter` and `read_adapter_config` (in `io`) take such a folder through here.

A pickled folder (`pytorch_adapter.bin`, AdapterHub's default save) is read, where `pickles_allowed`,
with `torch.load(weights_only=True)`, which rebuilds tensors and refuses any other object; its tensors are
kept in `Imported.pickled`, so the file is unpickled once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
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
    PICKLE_NOTE,
    layout,
    our_config,
    pickles_allowed,
    read_json,
    their_head,
    weights_file,
)
from .errors import AdapterError
from .heads import head_shapes
from .placement import ARCHITECTURES
from .schema import CONFIG_FILE, read_safetensors_header, validate_meta

_PARTS = {"adapter_down.0": "down", "adapter_up": "up"}
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
log = logging.getLogger("adapter_core")


@dataclass
class Imported:
    meta: dict[str, Any]  # ours, checked by the schema
    files: list[tuple[Path, dict[str, str]]]  # each weights file, and its tensor names -> ours
    pickled: dict[Path, dict[str, torch.Tensor]] = field(default_factory=dict)  # pickles' tensors, read once


def read_adapterhub(folder: str | Path, num_layers: int | None = None, allow_pickle: bool = True) -> Imported:
    """Our view of an AdapterHub folder. `num_layers`: the base's depth, when known (else inferred from
    the deepest layer holding the adapter). `allow_pickle=False` refuses `.bin` weights (a public studio
    always does). Raises AdapterError naming what does not map."""
    folder = Path(folder)
    cfg = read_json(folder / CONFIG_FILE, f"{folder.name}/{CONFIG_FILE}")
    model_type, hidden, name = cfg["model_type"], cfg["hidden_size"], cfg["name"]
    lay, stack = layout(model_type), ARCHITECTURES[model_type].stacks[0].layers
    allow, pickled = pickles_allowed(allow_pickle), {}
    path = weights_file(folder, ADAPTER_WEIGHTS, ADAPTER_PICKLE, allow)
    header = _header(path, pickled)
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
        files.append(_read_head(folder, meta, hidden, allow, pickled))
    elif (folder / HEAD_WEIGHTS).exists() or (folder / HEAD_PICKLE).exists():
        raise AdapterError(f"{folder.name} has head weights but no {HEAD_CONFIG}; it is incomplete.")
    validate_meta(meta, f"{folder.name}/{CONFIG_FILE}")
    if pickled:
        log.warning("%s: %s %s", folder.name, " and ".join(p.name for p in pickled), PICKLE_NOTE)
    return Imported(meta, files, pickled)


def _header(path: Path, pickled: dict[Path, dict[str, torch.Tensor]]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape): a safetensors header, or a pickle's tensors (kept in `pickled`)."""
    if path.suffix == ".safetensors":
        return read_safetensors_header(path)
    pickled[path] = tensors = _unpickle(path)
    return {key: (_DTYPES[t.dtype], tuple(t.shape)) for key, t in tensors.items()}


def _unpickle(path: Path) -> dict[str, torch.Tensor]:
    """A pickled state dict through the weights-only loader: tensors and plain containers, nothing else."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for a forbidden object; RuntimeError, EOFError... for damage
        raise AdapterError(
            f"{path.name} is not a PyTorch file of tensors that torch.load(weights_only=True) accepts "
            f"({type(e).__name__})."
        ) from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    ):
        raise AdapterError(f"{path.name} does not hold tensor names and tensors (a state dict).")
    odd = next((k for k, v in value.items() if v.dtype not in _DTYPES), None)
    if odd is not None:
        raise AdapterError(
            f"{path.name}: tensor {odd[:80]!r} is {value[odd].dtype}; adapters hold only float32, float16 or "
            "bfloat16 tensors."
        )
    return value


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


def _read_head(
    folder: Path, meta: dict[str, Any], hidden: int, allow_pickle: bool, pickled: dict
) -> tuple[Path, dict[str, str]]:
    head = read_json(folder / HEAD_CONFIG, f"{folder.name}/{HEAD_CONFIG}")
    spec, labels, out = their_head(head, f"{folder.name}/{HEAD_CONFIG}")
    path = weights_file(folder, HEAD_WEIGHTS, HEAD_PICKLE, allow_pickle)
    header = _header(path, pickled)
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
        tensors = imported.pickled.get(path)
        try:
            tensors = load_file(path) if tensors is None else tensors
        except (SafetensorError, OSError):
            raise AdapterError(f"{path.name} is not a readable safetensors file.") from None
        out |= {mapping[k]: v for k, v in tensors.items()}
    return out
