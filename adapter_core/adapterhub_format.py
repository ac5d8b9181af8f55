"""AdapterHub's format (`adapters` 1.3.0, `model.save_adapter(...)`), read and written for the bottleneck
adapters both libraries share: Houlsby (their `DoubleSeqBnConfig`), Pfeiffer (`SeqBnConfig` with
`original_ln_before=False`) and parallel (`ParBnConfig`), on the BERT-like encoders whose modules both
libraries lay out alike.

Their folder: `adapter_config.json` (`{"config": {...BnConfig...}, "name", "model_type", "hidden_size",
"version", ...}`), `adapter.safetensors` with tensors such as
`bert.encoder.layer.0.attention.output.adapters.NAME.adapter_down.0.weight`, and, for a head,
`head_config.json` + `model_head.safetensors` (`heads.NAME.1.weight`, ...). Their adapter reads the
output of a sub-layer's dense projection and adds its own output to it, before the model's own residual
and layer norm (`original_ln_before=False`, `original_ln_after=True`): exactly our serial slot. Their
parallel adapter reads the sub-layer's input, as ours does. Their classification head reads the first
token ([CLS]): our pooling `cls`.

Pickles (`pytorch_adapter.bin`, `pytorch_model_head.bin`, their default save): local use reads them with
`torch.load(weights_only=True)`, the loader that accepts only tensors (safe since torch 2.6), and says
safetensors is preferred; a public studio never opens them (see `pickles_allowed` and `PICKLE_HELP`).

This module is the format itself: its file names, where each model type keeps its adapters, and which
configurations map each way. Reading a folder is `adapterhub_read`; writing one (an export) is
`adapter_core.share.adapterhub_export`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import AdapterConfig
from .errors import AdapterError
from .heads import HEAD_ACTIVATIONS
from .placement import ARCHITECTURES
from .schema import CONFIG_FILE, WEIGHTS_FILE, read_config_json

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_PICKLE = "pytorch_adapter.bin"
HEAD_CONFIG = "head_config.json"
HEAD_WEIGHTS = "model_head.safetensors"
HEAD_PICKLE = "pytorch_model_head.bin"
# Their loader renames "gelu" to the tanh approximation in configs without a version; ours is exact.
FORMAT_VERSION = "adapters.1.3.0"
SAVE_SAFETENSORS = "model.save_adapter(folder, name, use_safetensors=True)"
PICKLE_HELP = (
    "is a pickle file, which Adapter Studio reads only on your own machine (with torch 2.6 or later), never in "
    f"a public studio: unpickling can run code. Save the adapter again as safetensors in AdapterHub: {SAVE_SAFETENSORS}."
)
PICKLE_NOTE = (
    "read with torch.load(weights_only=True), which accepts tensors only; safetensors is preferred: save it "
    f"again in AdapterHub with {SAVE_SAFETENSORS}, or convert it once with "
    "`python -m adapter_core export --adapter FOLDER --format adapter_core --out OUT`."
)
SAFE_TORCH = (2, 6)  # torch.load(weights_only=True) before 2.6 had escapes (CVE-2025-32434)
_ACTIVATIONS_IN = {"gelu_orig": "gelu", "relu": "relu", "tanh": "tanh", "swish": "swish", "silu": "swish"}
_INITS_IN = {"bert": "normal", "mam_adapter": "kaiming", "houlsby": "houlsby"}


@dataclass(frozen=True)
class Layout:
    """Where AdapterHub keeps a model type's adapters: `<prefix>.<layers>.<i>.<attn|ffn>.adapters.NAME`."""

    prefix: str  # the transformers base_model_prefix its AdapterModel class saves under
    model_class: str  # their flex-head model class, named in head_config.json
    attn: str  # the module (in a block) that holds the attention sub-layer's adapters
    ffn: str


LAYOUTS = {
    "bert": Layout("bert", "BertAdapterModel", "attention.output", "output"),
    "roberta": Layout("roberta", "RobertaAdapterModel", "attention.output", "output"),
    "xlm-roberta": Layout("roberta", "XLMRobertaAdapterModel", "attention.output", "output"),
    "electra": Layout("electra", "ElectraAdapterModel", "attention.output", "output"),
}


def layout(model_type: str) -> Layout:
    if model_type not in LAYOUTS:
        raise AdapterError(
            f"AdapterHub interop covers {', '.join(LAYOUTS)} models, where both libraries place adapters alike; "
            f"this adapter is for {model_type!r}."
        )
    return LAYOUTS[model_type]


def their_keys(model_type: str, name: str, layer: int, kind: str) -> dict[str, str]:
    """Our tensor names of one slot (`down.weight`, ...) -> theirs."""
    lay = layout(model_type)
    stack = ARCHITECTURES[model_type].stacks[0].layers
    module = f"{lay.prefix}.{stack}.{layer}.{getattr(lay, kind)}.adapters.{name}"
    return {
        "down.weight": f"{module}.adapter_down.0.weight",
        "down.bias": f"{module}.adapter_down.0.bias",
        "up.weight": f"{module}.adapter_up.weight",
        "up.bias": f"{module}.adapter_up.bias",
    }


# Their configuration -> ours -----------------------------------------------------------------------
def our_config(their: dict[str, Any], model_type: str, bottleneck: int, versioned: bool) -> AdapterConfig:
    """The AdapterConfig that computes what their BnConfig computes, or one error naming every field
    that has no equivalent here."""
    problems = []

    def refuse(cond: bool, text: str) -> None:
        if cond:
            problems.append(text)

    arch = their.get("architecture")
    refuse(arch not in (None, "bottleneck"), f"architecture {arch!r} (only bottleneck adapters map)")
    parallel = bool(their.get("is_parallel"))
    refuse(
        not parallel and bool(their.get("original_ln_before")),
        "original_ln_before=True (their adapter would read the sub-layer after the model's own residual and "
        "layer norm, as SeqBnConfig does by default; ours reads the projection's output: original_ln_before=False)",
    )
    refuse(their.get("original_ln_after") is False, "original_ln_after=False (ours keeps the model's own residual)")
    refuse(bool(their.get("ln_before")) or bool(their.get("ln_after")), "layer-norm adapters (ln_before / ln_after)")
    refuse(bool(their.get("use_gating")), "use_gating=True (gated adapters)")
    refuse(bool(their.get("phm_layer")), "phm_layer=True (Compacter's PHM layers)")
    refuse(their.get("inv_adapter") is not None, f"inv_adapter={their.get('inv_adapter')!r} (invertible adapters)")
    refuse(float(their.get("stochastic_depth") or 0) > 0, "stochastic_depth > 0")
    refuse(isinstance(their.get("reduction_factor"), dict), "a per-layer reduction_factor mapping")
    scaling = their.get("scaling", 1.0)
    refuse(not isinstance(scaling, (int, float)), f"scaling={scaling!r} (only a fixed number maps)")
    act = str(their.get("non_linearity") or "").lower()
    # Without a version their loader reads "gelu" as the tanh approximation ("gelu_new").
    act = _ACTIVATIONS_IN.get(act) or ("gelu" if act == "gelu" and versioned else None)
    refuse(
        act is None,
        f"non_linearity={their.get('non_linearity')!r} (ours: gelu, relu, swish, tanh"
        + ("; an unversioned config's 'gelu' means the tanh approximation)" if not versioned else ")"),
    )
    mh, out = bool(their.get("mh_adapter")), bool(their.get("output_adapter"))
    refuse(not (mh or out), "neither mh_adapter nor output_adapter (no adapter at all)")
    if problems:
        raise AdapterError("This AdapterHub adapter cannot map onto Adapter Studio's: " + "; ".join(problems) + ".")
    placement = "parallel" if parallel else ("houlsby" if mh else "pfeiffer")
    targets = None
    if mh != out and (parallel or mh):  # one sub-layer only, where our placement has both
        targets = _one_sublayer(model_type, "attn" if mh else "ffn")
    return AdapterConfig(
        bottleneck=bottleneck,
        placement=placement,
        activation=act,
        init=_INITS_IN.get(their.get("init_weights"), "normal"),
        dropout=float(their.get("dropout") or 0.0),
        scaling=float(scaling),
        leave_out=[int(i) for i in their.get("leave_out") or []],
        target_modules=targets,
    )


def _one_sublayer(model_type: str, kind: str) -> dict[str, str]:
    stack = ARCHITECTURES[model_type].stacks[0]
    sub = stack.sublayers[kind]
    return {"layers": stack.layers, kind: sub.out, f"{kind}_input": sub.inp}


# Which of our configurations theirs can express --------------------------------------------------------------
def export_problems(meta: dict[str, Any], with_head: bool = True) -> list[str]:
    """Why an adapter of ours cannot be written in AdapterHub's format (empty: it can)."""
    model_type = meta["base"]["model_type"]
    if model_type not in LAYOUTS:
        return [f"base model type {model_type!r} (AdapterHub interop covers {', '.join(LAYOUTS)})"]
    config = AdapterConfig.from_dict(meta["config"])
    problems = []
    if config.target_modules is not None and sublayers(config, model_type) is None:
        problems.append("target_modules other than one of the placement's own sub-layers")
    if with_head and meta["task"] == "classification" and meta.get("pooling") != "cls":
        problems.append(
            f"pooling {meta.get('pooling')!r} (AdapterHub's classification head reads the first token: pooling 'cls')"
        )
    return problems


def sublayers(config: AdapterConfig, model_type: str) -> tuple[bool, bool] | None:
    """(attention, feed-forward) sub-layers that carry the adapter; None when target_modules name others."""
    if config.target_modules is None:
        return ("attn" in config.slots, True)
    for kind in ("attn", "ffn"):
        if config.target_modules == _one_sublayer(model_type, kind):
            return (kind == "attn", kind == "ffn")
        serial = {k: v for k, v in _one_sublayer(model_type, kind).items() if not k.endswith("_input")}
        if config.placement != "parallel" and config.target_modules == serial:
            return (kind == "attn", kind == "ffn")
    return None


# Reading their files -----------------------------------------------------------------------------------
def is_adapterhub_dir(path: Path) -> bool:
    """A folder that AdapterHub's `save_adapter` wrote (and not one of ours)."""
    path = Path(path)
    return (
        path.is_dir()
        and (path / CONFIG_FILE).is_file()
        and not (path / WEIGHTS_FILE).exists()
        and ((path / ADAPTER_WEIGHTS).is_file() or (path / ADAPTER_PICKLE).is_file())
    )


def read_json(path: Path, what: str) -> dict[str, Any]:
    value = read_config_json(path, what)
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        raise AdapterError(f"{what} is not an AdapterHub config: it has no 'config' object.")
    for key, kind in (("name", str), ("model_type", str), ("hidden_size", int)):
        if not isinstance(value.get(key), kind) or isinstance(value.get(key), bool):
            raise AdapterError(f"{what}: '{key}' must be a {kind.__name__}; got {str(value.get(key))[:40]}.")
    return value


def public_mode() -> bool:
    """Whether this process is a public studio (the rule of `studio.policy.Policy.from_env`): on a Space or
    with ADAPTER_STUDIO_PUBLIC=1, unless ADAPTER_STUDIO_PUBLIC=0. A second guard under the studio's own."""
    flag = os.environ.get("ADAPTER_STUDIO_PUBLIC", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    return bool(os.environ.get("SPACE_ID")) and flag not in ("0", "false")


def pickles_allowed(allow: bool = True) -> bool:
    """Whether a pickled AdapterHub file may be read here: asked for, never in a public studio, and only
    with a torch whose weights_only loader is safe."""
    return allow and not public_mode() and _torch_version() >= SAFE_TORCH


def _torch_version() -> tuple[int, int]:
    import torch

    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def weights_file(folder: Path, safe: str, pickle: str, allow_pickle: bool = False) -> Path:
    """The safetensors file when there is one, else the pickle when `allow_pickle`; else a refusal."""
    if (folder / safe).is_file():
        return folder / safe
    if allow_pickle and (folder / pickle).is_file():
        return folder / pickle
    raise AdapterError(f"{folder.name}/{pickle} {PICKLE_HELP}")


def their_head(head: dict[str, Any], what: str) -> tuple[dict | None, list[str], int]:
    """(our head spec, labels, their index of the output layer) of their head_config.json."""
    cfg = head["config"]
    problems = []
    if cfg.get("head_type") != "classification":
        problems.append(f"head_type {cfg.get('head_type')!r} (only 'classification' heads map)")
    if cfg.get("use_pooler"):
        problems.append("use_pooler=True (the model's pooler layer)")
    if cfg.get("bias") is False:
        problems.append("bias=False")
    layers, act = cfg.get("layers"), cfg.get("activation_function")
    if layers not in (1, 2) or (layers == 2 and act not in HEAD_ACTIVATIONS):
        problems.append(f"layers={layers!r} with activation_function={act!r} (ours: 1, or 2 with tanh/gelu/relu/swish)")
    n = cfg.get("num_labels")
    if not isinstance(n, int) or n < 2:
        problems.append(f"num_labels={n!r} (a classifier needs 2 or more)")
    if problems:
        raise AdapterError(f"{what}: this head cannot map onto ours: " + "; ".join(problems) + ".")
    label2id = cfg.get("label2id")
    labels = [f"LABEL_{i}" for i in range(n)]
    if isinstance(label2id, dict) and sorted(map(str, label2id.values())) == sorted(map(str, range(n))):
        labels = [str(k) for k, _ in sorted(label2id.items(), key=lambda kv: int(kv[1]))]
    spec = None if layers == 1 else {"type": "mlp", "activation": act}
    return spec, labels, 1 if layers == 1 else 4
