"""Where adapters go: `model_type` -> the output projection of each sub-layer, and discovery for the rest.

A new architecture is one row in `ARCHITECTURES`. Paths are relative to one block of the block list.
Each sub-layer names its output projection (wrapped by the adapter slot) and the module whose input
is the sub-layer's input (read by parallel adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import AdapterConfig
from .errors import AdapterError


@dataclass(frozen=True)
class SubLayer:
    out: str  # the output projection, wrapped by the slot
    inp: str  # the module whose first input is the sub-layer's input


@dataclass(frozen=True)
class Stack:
    layers: str  # path of the nn.ModuleList of blocks
    sublayers: dict[str, SubLayer]  # "attn" | "cross" | "ffn" -> SubLayer


@dataclass(frozen=True)
class Architecture:
    """Where adapters go in one architecture: its block lists and, in each block, its sub-layers."""

    family: str  # "encoder" | "decoder" | "encoder-decoder"
    stacks: tuple[Stack, ...]


@dataclass(frozen=True)
class Target:
    stack: int
    layer: int
    kind: str
    out: str  # full module path in the model
    inp: str

    @property
    def key(self) -> str:
        """A name for the slot that doesn't depend on the wrapping class (BertModel or BertFor...)."""
        return f"s{self.stack}.l{self.layer}.{self.kind}"


def _stack(layers: str, attn: tuple[str, str], ffn: tuple[str, str]) -> Stack:
    return Stack(layers, {"attn": SubLayer(*attn), "ffn": SubLayer(*ffn)})


_BERT = Architecture(
    "encoder",
    (_stack("encoder.layer", ("attention.output.dense", "attention.self"), ("output.dense", "intermediate")),),
)
_LLAMA = Architecture("decoder", (_stack("layers", ("self_attn.o_proj", "self_attn"), ("mlp.down_proj", "mlp")),))
_T5_ATTN = SubLayer("layer.0.SelfAttention.o", "layer.0.SelfAttention")
_T5 = Architecture(
    "encoder-decoder",
    (
        Stack(
            "encoder.block", {"attn": _T5_ATTN, "ffn": SubLayer("layer.1.DenseReluDense.wo", "layer.1.DenseReluDense")}
        ),
        Stack(
            "decoder.block",
            {
                "attn": _T5_ATTN,
                "cross": SubLayer("layer.1.EncDecAttention.o", "layer.1.EncDecAttention"),
                "ffn": SubLayer("layer.2.DenseReluDense.wo", "layer.2.DenseReluDense"),
            },
        ),
    ),
)

ARCHITECTURES: dict[str, Architecture] = {
    **dict.fromkeys(
        ["bert", "roberta", "xlm-roberta", "electra", "camembert", "deberta", "deberta-v2", "data2vec-text"], _BERT
    ),
    "mpnet": Architecture(
        "encoder", (_stack("encoder.layer", ("attention.attn.o", "attention.attn"), ("output.dense", "intermediate")),)
    ),
    "distilbert": Architecture(
        "encoder", (_stack("transformer.layer", ("attention.out_lin", "attention"), ("ffn.lin2", "ffn")),)
    ),
    **dict.fromkeys(
        ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "smollm3", "granite"],
        _LLAMA,
    ),
    "gpt2": Architecture("decoder", (_stack("h", ("attn.c_proj", "attn"), ("mlp.c_proj", "mlp")),)),
    "gpt_neox": Architecture(
        "decoder", (_stack("layers", ("attention.dense", "attention"), ("mlp.dense_4h_to_h", "mlp")),)
    ),
    "phi": Architecture("decoder", (_stack("layers", ("self_attn.dense", "self_attn"), ("mlp.fc2", "mlp")),)),
    "opt": Architecture("decoder", (_stack("decoder.layers", ("self_attn.out_proj", "self_attn"), ("fc2", "fc1")),)),
    **dict.fromkeys(["t5", "mt5"], _T5),
}

# Names that output projections carry across architectures, for discovery.
_OUT_NAMES = {
    "o_proj",
    "out_proj",
    "o",
    "dense",
    "c_proj",
    "down_proj",
    "fc2",
    "wo",
    "dense_4h_to_h",
    "out_lin",
    "lin2",
    "proj_out",
    "output_proj",
    "w2",
    "fc_out",
    "out",
}
_ATTN_WORDS = ("attn", "attention")


def out_features(module: nn.Module) -> int | None:
    """Output width of a Linear-like module (nn.Linear, GPT-2's Conv1D, quantised linears)."""
    for attr in ("out_features", "nf"):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    weight = getattr(module, "weight", None)
    return weight.shape[0] if weight is not None and weight.dim() == 2 else None


def model_family(model: nn.Module) -> str:
    config = model.config
    row = ARCHITECTURES.get(config.model_type)
    if row is not None:
        return row.family
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    arch = " ".join(getattr(config, "architectures", None) or [])
    return "decoder" if getattr(config, "is_decoder", False) or "CausalLM" in arch or "LMHead" in arch else "encoder"


def resolve_targets(model: nn.Module, config: AdapterConfig) -> list[Target]:
    """Every (layer, sub-layer) output projection of `model` that an adapter can wrap."""
    if config.target_modules is not None:
        tm = config.target_modules
        stacks = (
            Stack(
                tm["layers"],
                {k: SubLayer(tm[k], tm.get(f"{k}_input") or _parent(tm[k])) for k in ("attn", "ffn") if k in tm},
            ),
        )
    elif config_type := ARCHITECTURES.get(model.config.model_type):
        stacks = config_type.stacks
    else:
        stacks = (_discover(model),)
    modules = dict(model.named_modules())
    targets = []
    for s, stack in enumerate(stacks):
        prefix = _find_layers(model, modules, stack.layers)
        for i in range(len(modules[prefix])):
            for kind, sub in stack.sublayers.items():
                out, inp = f"{prefix}.{i}.{sub.out}", f"{prefix}.{i}.{sub.inp}"
                for path in (out, inp):
                    if path not in modules:
                        raise AdapterError(
                            f"Expected module {path!r} in this {model.config.model_type} model, but it is not "
                            "there (transformers may have renamed it). Pass target_modules="
                            '{"layers": ..., "attn": ..., "ffn": ...} with the paths printed by print(model).'
                        )
                targets.append(Target(s, i, kind, out, inp))
    return targets


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else path


def _find_layers(model: nn.Module, modules: dict[str, nn.Module], path: str) -> str:
    # The same row serves BertModel ("encoder.layer") and BertForX ("bert.encoder.layer").
    found = [n for n, m in modules.items() if isinstance(m, nn.ModuleList) and (n == path or n.endswith("." + path))]
    if not found:
        raise AdapterError(
            f"No block list {path!r} in this {model.config.model_type} model ({type(model).__name__}). "
            "Pass target_modules with the right 'layers' path, as printed by print(model)."
        )
    return min(found, key=len)


def _discover(model: nn.Module) -> Stack:
    """Guess the block list and the output projections of an architecture missing from the table."""
    hidden = model.config.hidden_size
    lists = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) > 1 and len({type(b) for b in m}) == 1
    ]
    model_type = model.config.model_type
    hint = (
        'Pass target_modules={"layers": "<block list>", "attn": "<attention output projection>", '
        '"ffn": "<feed-forward output projection>"} with paths from print(model), e.g. '
        '{"layers": "model.layers", "attn": "self_attn.o_proj", "ffn": "mlp.down_proj"}.'
    )
    if not lists:
        raise AdapterError(f"model_type {model_type!r} is not in the placement table and has no list of blocks. {hint}")
    layers, blocks = max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))
    found = [
        name
        for name, mod in blocks[0].named_modules()
        if name and name.rsplit(".", 1)[-1] in _OUT_NAMES and out_features(mod) == hidden and not list(mod.children())
    ]
    attn = [n for n in found if any(w in n.lower() for w in _ATTN_WORDS)]
    ffn = [n for n in found if n not in attn]
    if len(attn) != 1 or len(ffn) != 1:
        raise AdapterError(
            f"model_type {model_type!r} is not in the placement table, and discovery in {layers!r} "
            f"({len(blocks)} x {type(blocks[0]).__name__}) found attention outputs {attn or 'none'} and "
            f"feed-forward outputs {ffn or 'none'}, where it needs exactly one of each. {hint}"
        )
    return Stack(layers, {"attn": SubLayer(attn[0], _parent(attn[0])), "ffn": SubLayer(ffn[0], _parent(ffn[0]))})
