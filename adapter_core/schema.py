"""Checks for adapter files from strangers, run before anything is allocated.

`validate_meta` checks an adapter_config.json field by field, types included; `read_safetensors_header`
reads a safetensors header by hand (no tensor is read) and checks that every tensor lies inside the
file. Messages name files by their names only, never by a server path.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import TASKS, AdapterConfig
from .errors import AdapterError
from .heads import POOLINGS, head_shapes
from .out_of_scope import MAX_BANK, SCORES, Stats

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
# The files beside the weights that a shared adapter folder may hold: its model card and training curve.
CARD_FILE = "README.md"
CURVE_PNG = "curve.png"
CURVE_FILE = "metrics.jsonl"
# A router's out-of-scope statistics (out_of_scope.Stats): class means, precision matrix, feature bank.
STATS_FILE = "out_of_scope.safetensors"
MAX_CONFIG_BYTES = 2**20  # an adapter config is a few KB; labels and training metadata included
MAX_HEADER_BYTES = 4 * 2**20  # a safetensors header: about 100 bytes per tensor
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}
_MISSING = object()


# Checking the config ---------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any, finite: bool = True) -> bool:
    return (_is_int(value) or isinstance(value, float)) and (not finite or math.isfinite(value))


def validate_meta(meta: Any, source: str = CONFIG_FILE) -> dict[str, Any]:
    """Check an `adapter_config.json` dict field by field, types included; return it unchanged.

    Raises AdapterError naming the wrong field and what it should be, so a damaged or hostile file
    never reaches code that indexes into it."""

    def need(ok: bool, field: str, should: str, value: Any) -> None:
        if not ok:
            raise AdapterError(f"{source}: {field} {should}; got {_describe(value)}.")

    need(isinstance(meta, dict), "the file", "must hold a JSON object", meta)
    task = meta.get("task", _MISSING)
    need(task in TASKS, "'task'", 'must be "classification" or "instruction"', task)
    base = meta.get("base", _MISSING)
    need(isinstance(base, dict), "'base'", "must be an object with model_type, hidden_size and num_layers", base)
    need(isinstance(base.get("model_type"), str), "'base.model_type'", "must be a string", base.get("model_type"))
    for key in ("hidden_size", "num_layers"):
        value = base.get(key, _MISSING)
        need(_is_int(value) and value > 0, f"'base.{key}'", "must be a positive whole number", value)
    value = base.get("name_or_path")
    need(value is None or isinstance(value, str), "'base.name_or_path'", "must be a string or null", value)
    config = _check_config(meta.get("config", _MISSING), need, source)
    try:
        r = config.bottleneck_for(base["hidden_size"])
    except (OverflowError, ValueError):
        need(False, "'config.reduction_factor'", "is too small", config.reduction_factor)
    value = meta.get("bottleneck")
    need(value is None or (_is_int(value) and value > 0), "'bottleneck'", "must be a positive whole number", value)
    need(value is None or value == r, "'bottleneck'", f"must match the config's bottleneck {r}", value)
    labels = meta.get("labels")
    if task == "classification":
        ok = isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)
        need(ok, "'labels'", "must be a list of at least two label names (strings)", labels)
        need(len(set(labels)) == len(labels), "'labels'", "must not repeat a name", labels)
    else:
        need(labels is None, "'labels'", "must be null for an instruction adapter", labels)
    for key in ("name", "base_model", "adapter_core_version"):
        value = meta.get(key)
        need(value is None or isinstance(value, str), f"'{key}'", "must be a string or null", value)
    value = meta.get("pooling")
    need(value is None or value in POOLINGS, "'pooling'", f"must be one of {', '.join(POOLINGS)} or null", value)
    for key in ("training", "train_config"):
        value = meta.get(key)
        need(value is None or isinstance(value, dict), f"'{key}'", "must be an object or null", value)
    training = meta.get("training") or {}
    metrics = training.get("metrics")
    ok = metrics is None or (isinstance(metrics, dict) and all(_is_number(v, finite=False) for v in metrics.values()))
    need(ok, "'training.metrics'", "must map metric names to numbers", metrics)
    value = training.get("status")
    need(value is None or isinstance(value, str), "'training.status'", "must be a string", value)
    for key in ("step", "train_seconds", "total_steps"):
        value = training.get(key)
        need(value is None or _is_number(value, finite=False), f"'training.{key}'", "must be a number", value)
    _check_out_of_scope(meta.get("out_of_scope"), need)
    return meta


def _check_out_of_scope(section: Any, need) -> None:
    """The out-of-scope decision of a classification adapter (`engine/calibration.py`): a score and its
    threshold. Without a score (an adapter saved before scores had names), the threshold is a top-class
    confidence from 0 to 1; so is msp's (1 - the confidence)."""
    if section is None:
        return
    need(isinstance(section, dict), "'out_of_scope'", "must be an object with a threshold, or null", section)
    score = section.get("score")
    need(score is None or score in SCORES, "'out_of_scope.score'", f"must be one of {', '.join(SCORES)}", score)
    value = section.get("threshold", _MISSING)
    if score in (None, "msp"):
        need(_is_number(value) and 0 <= value <= 1, "'out_of_scope.threshold'", "must be a number from 0 to 1", value)
    else:
        need(_is_number(value), "'out_of_scope.threshold'", "must be a number", value)
    value = section.get("msp_threshold")
    ok = value is None or (_is_number(value) and 0 <= value <= 1)
    need(ok, "'out_of_scope.msp_threshold'", "must be a number from 0 to 1", value)
    for key in ("in_scope_recall", "validation_rows", "false_rejection", "oos_rows", "oos_recall", "fit_seconds"):
        value = section.get(key)
        need(value is None or _is_number(value), f"'out_of_scope.{key}'", "must be a number", value)
    value = section.get("method")
    need(value is None or isinstance(value, str), "'out_of_scope.method'", "must be a string", value)
    curve = section.get("curve")
    ok = curve is None or (
        isinstance(curve, dict)
        and all(isinstance(v, list) and len(v) <= 101 and all(_is_number(x) for x in v) for v in curve.values())
        and len({len(v) for v in curve.values()}) <= 1
    )
    need(ok, "'out_of_scope.curve'", "must map names to lists of at most 101 numbers, all of one length", curve)


def check_stats(header: dict[str, tuple[str, tuple[int, ...]]], hidden: int, num_labels: int) -> None:
    """A router's `STATS_FILE` must hold exactly the class means, the precision matrix and a bank of at
    most MAX_BANK rows, at the adapter's width and label count (checked before any tensor is read)."""
    want = {"means": (num_labels, hidden), "precision": (hidden, hidden)}
    if "background_mean" in header or "background_precision" in header:  # for relative_mahalanobis
        want |= {"background_mean": (hidden,), "background_precision": (hidden, hidden)}
    if "fusion" in header:  # for fused
        want |= {"fusion": (4,)}
    if "knn_k" in header:  # the neighbour knn reads (a file saved without it used 10)
        want |= {"knn_k": (1,)}
    if "knn_fusion" in header:  # for energy_knn
        want |= {"knn_fusion": (4,)}
    bank = header.get("bank", (None, ()))[1]
    ok = set(header) == {*want, "bank"} and all(header[k][1] == v for k, v in want.items())
    if not ok or len(bank) != 2 or not 1 <= bank[0] <= MAX_BANK or bank[1] != hidden:
        got = ", ".join(f"{k} {list(v[1])}" for k, v in sorted(header.items())[:4]) or "nothing"
        raise AdapterError(
            f"{STATS_FILE} does not match its config: it holds {got}, where {num_labels:,} labels at width "
            f"{hidden:,} need means {list(want['means'])}, precision {list(want['precision'])} and a bank of 1 to "
            f"{MAX_BANK:,} rows."
        )


def base_name(meta: dict[str, Any]) -> str | None:
    """The base an adapter's metadata names: its `base_model` (a catalog name or hub id, as it was loaded),
    else the model's own `name_or_path`, which may be a folder of the machine that trained it."""
    return meta.get("base_model") or (meta.get("base") or {}).get("name_or_path")


def check_knn_k(value: float | None) -> None:
    """The saved neighbour rank of the kNN scores: a whole number from 1 to MAX_BANK."""
    if value is not None and not (math.isfinite(value) and value == int(value) and 1 <= value <= MAX_BANK):
        raise AdapterError(
            f"{STATS_FILE} does not match its config: its knn_k must be a whole number from 1 to "
            f"{MAX_BANK:,}; it is {value}."
        )


def read_stats(path: Path, hidden: int, num_labels: int) -> Stats:
    """A router's `STATS_FILE`, checked as a stranger's file: its header first (names and shapes, before
    any tensor is read), then its values, as float32 (a half-precision copy would fail at classify): all
    finite, the spreads the fused scores divide by above 0, and a knn_k within its bank."""
    check_stats(read_safetensors_header(path), hidden, num_labels)
    try:
        stats = Stats(**{k: v.float() for k, v in load_file(path).items()})
    except (SafetensorError, OSError) as e:
        raise AdapterError(f"{STATS_FILE} could not be read ({type(e).__name__}).") from None
    check_knn_k(None if stats.knn_k is None else stats.knn_k.item())
    bad = next((k for k, v in vars(stats).items() if v is not None and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise AdapterError(f"{STATS_FILE} holds values that are not finite numbers in its {bad}.")
    for name in ("fusion", "knn_fusion"):
        moments = getattr(stats, name)
        if moments is not None and not bool((moments[[1, 3]] > 0).all()):
            raise AdapterError(f"{STATS_FILE}'s {name} has a spread of 0 or below: no score can be scaled by it.")
    if stats.knn_k is not None and stats.knn_k.item() > len(stats.bank):
        raise AdapterError(
            f"{STATS_FILE}'s knn_k is {int(stats.knn_k.item())}, but its bank holds {len(stats.bank):,} rows."
        )
    return stats


def _check_config(config: Any, need, source: str) -> AdapterConfig:
    need(isinstance(config, dict), "'config'", "must be an object (the adapter's AdapterConfig)", config)
    for key in ("dropout", "scaling", "reduction_factor"):
        value = config.get(key, _MISSING)
        ok = value is _MISSING or (value is None and key != "dropout") or _is_number(value)
        need(ok, f"'config.{key}'", "must be a number", value)
    value = config.get("leave_out", [])
    ok = isinstance(value, list) and all(_is_int(i) for i in value)
    need(ok, "'config.leave_out'", "must be a list of layer indices", value)
    value = config.get("target_modules")
    ok = value is None or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
    need(ok, "'config.target_modules'", "must be an object of module paths, or null", value)
    try:
        return AdapterConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise AdapterError(f"{source}: 'config' is not a valid adapter config: {e}") from None


def read_meta_file(path: str | os.PathLike, source: str | None = None) -> dict[str, Any]:
    """Read and check an adapter_config.json, reading at most MAX_CONFIG_BYTES of it."""
    path = Path(path)
    source = source or path.name
    return validate_meta(read_config_json(path, source), source)


def read_config_json(path: Path, source: str) -> Any:
    """An adapter config file's JSON (ours or AdapterHub's), reading at most MAX_CONFIG_BYTES of it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise AdapterError(f"{source} could not be read ({e.strerror}).") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise AdapterError(f"{source} is over {MAX_CONFIG_BYTES // 2**20} MB; an adapter config is a few KB.")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AdapterError(f"{source} is not valid JSON ({type(e).__name__}: {str(e)[:120]}).") from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (a training curve), in order; a truncated or garbled line is skipped."""
    points = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            point = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(point, dict):
            points.append(point)
    return points


# Checking the weights -------------------------------------------------------------------------------
def read_safetensors_header(
    path: str | os.PathLike, max_header_bytes: int = MAX_HEADER_BYTES
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors file's header, without reading any tensor.

    Refuses a header over `max_header_bytes` or longer than the file, dtypes other than F32/F16/BF16,
    and tensors whose bytes do not lie inside the file or do not match their shape."""
    path = Path(path)
    what = path.name
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise AdapterError(f"{what} is not a safetensors file: it is only {size} bytes.")
            (length,) = struct.unpack("<Q", f.read(8))
            if length > max_header_bytes:
                raise AdapterError(
                    f"{what} has a {length:,}-byte header; the limit is {max_header_bytes:,}. It is not an adapter."
                )
            if 8 + length > size:
                raise AdapterError(f"{what} is damaged: its header claims {length:,} bytes but the file has {size:,}.")
            raw = f.read(length)
    except OSError as e:
        raise AdapterError(f"{what} could not be read ({e.strerror}).") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise AdapterError(f"{what} is damaged: its header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise AdapterError(f"{what} is damaged: its header is not a JSON object.")
    data_bytes = size - 8 - length
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (
            isinstance(info, dict)
            and isinstance(info.get("shape"), list)
            and isinstance(info.get("data_offsets"), list)
        )
        shape = info.get("shape") if ok else None
        offsets = info.get("data_offsets") if ok else None
        if not ok or not all(_is_int(d) and d >= 0 for d in shape) or len(offsets) != 2:
            raise AdapterError(f"{what} is damaged: tensor {name[:80]!r} has no valid shape and data offsets.")
        dtype = info.get("dtype")
        if dtype not in DTYPE_BYTES:
            raise AdapterError(
                f"{what}: tensor {name[:80]!r} is {_describe(dtype)}; adapters hold only F32, F16 or BF16 tensors."
            )
        begin, end = offsets
        if not (_is_int(begin) and _is_int(end) and 0 <= begin <= end <= data_bytes):
            raise AdapterError(f"{what} is damaged: tensor {name[:80]!r} lies outside the file.")
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise AdapterError(f"{what} is damaged: tensor {name[:80]!r} does not hold {shape} {dtype} values.")
        out[name] = (dtype, tuple(shape))
    return out


# Checking the weights against the config -----------------------------------------------------------
_TENSOR = re.compile(r"^adapters\.s(\d+)\.l(\d+)\.(attn|cross|ffn)\.(down|up)\.(weight|bias)$")


def check_weights_match(meta: dict[str, Any], header: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """The tensors must be exactly those the config describes, from the metadata alone (no base model):
    every slot `adapters.s<stack>.l<layer>.<attn|cross|ffn>` holds down/up weights and biases of the
    config's bottleneck, only at sub-layers and layers the config places adapters on, then, for
    classification, the head the config names (`heads.head_shapes`: linear, or AdapterHub's mlp)."""
    config = AdapterConfig.from_dict(meta["config"])
    hidden = meta["base"]["hidden_size"]
    r = config.bottleneck_for(hidden)
    n = len(meta.get("labels") or []) if meta["task"] == "classification" else 0
    shapes = {"down.weight": (r, hidden), "down.bias": (r,), "up.weight": (hidden, r), "up.bias": (hidden,)}
    slots: dict[str, set[str]] = {}
    body = {k: v for k, v in header.items() if not k.startswith("head.")}
    for name, (_, shape) in body.items():
        match = _TENSOR.match(name)
        if not match:
            raise AdapterError(f"{WEIGHTS_FILE} has tensor {name[:80]!r}, which is not part of an adapter.")
        _, layer, kind, proj, what = match.groups()
        if kind not in config.slots or int(layer) in config.leave_out:
            raise AdapterError(f"{WEIGHTS_FILE} has tensor {name!r}, where its config places no adapter.")
        slots.setdefault(name.rsplit(".", 2)[0], set()).add(f"{proj}.{what}")
        want = shapes[f"{proj}.{what}"]
        if shape != want:
            raise AdapterError(
                f"{WEIGHTS_FILE} does not match its config: {name} has shape {list(shape)}, expected {list(want)} "
                f"(bottleneck {r:,}, hidden size {hidden:,}, {n:,} labels)."
            )
    incomplete = sorted(k for k, parts in slots.items() if len(parts) != len(shapes))
    problem = (
        f"{incomplete[0]} lacks some of its tensors"
        if incomplete
        else "it holds no adapter tensors"
        if not slots
        else None
    )
    total = sum(math.prod(shape) for _, shape in body.values())
    if problem is None and total != len(slots) * (2 * hidden * r + r + hidden):
        problem = f"it holds {total:,} weights, not what {len(slots)} adapter slots need"
    if problem:
        raise AdapterError(f"{WEIGHTS_FILE} does not match its config: {problem}.")
    head = head_shapes(meta.get("head"), hidden, n) if n else {}
    got = {k: shape for k, (_, shape) in header.items() if k.startswith("head.")}
    if got != head:
        listed = lambda d: ", ".join(f"{k} {list(v)}" for k, v in sorted(d.items())[:4]) or "none"  # noqa: E731
        raise AdapterError(
            f"{WEIGHTS_FILE} does not match its config: its head tensors are {listed(got)}, "
            f"where {n:,} labels need {listed(head)}."
        )
