"""Writing one of our adapter folders in AdapterHub's format: their config, their tensor names, a card.

Reading their folders is the format layer's (`adapter_core.adapterhub_read`); the format itself, and which
of our configurations it can express, is `adapter_core.adapterhub_format`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..adapterhub_format import (
    ADAPTER_WEIGHTS,
    FORMAT_VERSION,
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    export_problems,
    layout,
    sublayers,
    their_keys,
)
from ..atomic import replace_dir
from ..card import write_card
from ..config import AdapterConfig
from ..errors import AdapterError
from ..io import read_adapter_config
from ..public import public_base
from ..schema import CONFIG_FILE, WEIGHTS_FILE, check_weights_match, read_safetensors_header

_INITS_OUT = {"normal": "bert", "kaiming": "mam_adapter", "xavier": "bert", "houlsby": "houlsby"}


def export_adapterhub(folder: str | Path, out: str | Path, with_head: bool = True) -> Path:
    """Write our adapter folder `folder` as an AdapterHub folder `out` (replaced atomically), which
    `model.load_adapter(out, use_safetensors=True)` loads into an `adapters` model of the same base."""
    folder, out = Path(folder), Path(out)
    meta = read_adapter_config(folder)
    check_weights_match(meta, read_safetensors_header(folder / WEIGHTS_FILE))
    problems = export_problems(meta, with_head)
    if problems:
        name = meta.get("name") or folder.name
        hint = (
            ""
            if export_problems(meta, with_head=False)
            else "; export without the head to keep the adapter alone (--without-head in the CLI, which the export "
            "does by itself in the studio)"
        )
        raise AdapterError(f"{name!r} cannot be written in AdapterHub's format: " + "; ".join(problems) + hint + ".")
    base, name = meta["base"], meta["name"]
    model_type, hidden = base["model_type"], base["hidden_size"]
    adapter, head = _their_tensors(load_file(folder / WEIGHTS_FILE), model_type, name)
    common = {
        "hidden_size": hidden,
        "model_class": layout(model_type).model_class,
        "model_name": public_base(meta),
        "model_type": model_type,
        "name": name,
        "version": FORMAT_VERSION,
    }
    config = AdapterConfig.from_dict(meta["config"])
    files = {CONFIG_FILE: {"config": their_config(config, model_type, hidden), **common}}
    if with_head and head:
        files[HEAD_CONFIG] = {"config": _their_head_config(meta), **common}
    else:
        head = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(adapter, staging / ADAPTER_WEIGHTS)
        if head:
            save_file(head, staging / HEAD_WEIGHTS)
        for file, value in files.items():
            (staging / file).write_text(json.dumps(value, indent=2, sort_keys=True))
        write_card(staging, meta, adapterhub=True)
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


_OURS = re.compile(r"^adapters\.s0\.l(\d+)\.(attn|ffn)\.(down\.weight|down\.bias|up\.weight|up\.bias)$")
_HEAD_INDEX = {"head": "1", "head.dense": "1", "head.out": "4"}  # their head: dropout, linear[, act, dropout, linear]


def _their_tensors(tensors: dict[str, torch.Tensor], model_type: str, name: str) -> tuple[dict, dict]:
    """Our tensors (checked against our config already) renamed to theirs: (adapter, head)."""
    adapter, head = {}, {}
    for key, value in tensors.items():
        if key.startswith("head."):
            module, what = key.rsplit(".", 1)
            head[f"heads.{name}.{_HEAD_INDEX[module]}.{what}"] = value
            continue
        layer, kind, part = _OURS.match(key).groups()
        adapter[their_keys(model_type, name, int(layer), kind)[part]] = value
    return adapter, head


def _their_head_config(meta: dict[str, Any]) -> dict[str, Any]:
    labels, spec = meta["labels"], meta.get("head")
    return {
        "activation_function": spec["activation"] if spec else "tanh",
        "bias": True,
        "dropout_prob": None,
        "head_type": "classification",
        "label2id": {label: i for i, label in enumerate(labels)},
        "layers": 2 if spec else 1,
        "num_labels": len(labels),
        "use_pooler": False,
    }


def their_config(config: AdapterConfig, model_type: str, hidden: int) -> dict[str, Any]:
    """Their full BnConfig dict (every field, as their own save writes it) for our config."""
    mh, out = sublayers(config, model_type)
    r = config.bottleneck_for(hidden)
    return {
        "adapter_residual_before_ln": False,
        "cross_adapter": False,
        "dropout": config.dropout,
        "factorized_phm_W": True,
        "factorized_phm_rule": False,
        "hypercomplex_nonlinearity": "glorot-uniform",
        "init_weights": _INITS_OUT[config.init],
        "init_weights_seed": None,
        "inv_adapter": None,
        "inv_adapter_reduction_factor": None,
        "is_parallel": config.placement == "parallel",
        "learn_phm": True,
        "leave_out": list(config.leave_out),
        "ln_after": False,
        "ln_before": False,
        "mh_adapter": mh,
        "non_linearity": config.activation,
        "original_ln_after": True,
        "original_ln_before": False,
        "output_adapter": out,
        "phm_bias": True,
        "phm_c_init": "normal",
        "phm_dim": 4,
        "phm_init_range": 0.0001,
        "phm_layer": False,
        "phm_rank": 1,
        "reduction_factor": reduction_factor(hidden, r),
        "residual_before_ln": True,
        "scaling": float(config.scaling),
        "shared_W_phm": False,
        "shared_phm_rule": True,
        "stochastic_depth": 0.0,
        "use_gating": False,
    }


def reduction_factor(hidden: int, r: int) -> float:
    """A factor from which their `int(hidden // factor)` gives back exactly `r`."""
    factor = hidden / r
    for _ in range(64):  # float division can land a hair under r: step the factor down until it does not
        if int(hidden // factor) == r:
            return factor
        factor = float.__sub__(factor, factor * 2**-50)
    raise AdapterError(f"No AdapterHub reduction_factor gives bottleneck {r} on hidden size {hidden}.")
