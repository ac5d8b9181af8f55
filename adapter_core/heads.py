"""Task heads: a classifier over a pooled vector. Instruction tuning keeps the base's LM head.

Two head types: `linear` (one layer, what training makes) and `mlp` (dense, activation, output: the
default classification head of AdapterHub, so their adapters import with their heads). An adapter's
`adapter_config.json` names a non-linear head in its `head` field (`head_spec`); none means linear.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import AdapterError

POOLINGS = ("cls", "mean", "last")
HEAD_TYPES = ("linear", "mlp")
HEAD_ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU}


def default_pooling(family: str, head_only: bool = False) -> str:
    """The pooling a classifier gets when none is asked for. Decoders see the whole text only at the last
    token. Encoders: the first token ([CLS]), which the adapter learns to fill; on BANKING77 with MiniLM it
    beat mean pooling by 1.2 points of accuracy and caught more unseen intents, and it is the token
    AdapterHub's classification heads read, so such an adapter exports with its head. But a head trained
    alone on a frozen encoder reads the mean of the tokens: that first token was never trained to sum the
    text up (73.1% against 84.3% on a BANKING77 run). Figures: bench/RESULTS.md, session 17."""
    if family == "decoder":
        return "last"
    return "mean" if head_only else "cls"


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise AdapterError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}.")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, seq, hidden) -> (batch, hidden). Works with left or right padding."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    last = (attention_mask.to(torch.long) * positions).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def new_head(hidden_size: int, num_labels: int) -> nn.Linear:
    head = nn.Linear(hidden_size, num_labels)
    nn.init.normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    return head


class MLPHead(nn.Module):
    """`out(act(dense(x)))`: a hidden layer of the model's width before the output layer."""

    def __init__(self, hidden_size: int, num_labels: int, activation: str = "tanh"):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = HEAD_ACTIVATIONS[activation]()
        self.out = nn.Linear(hidden_size, num_labels)
        self.activation = activation

    @property
    def weight(self) -> torch.Tensor:
        # Callers read `head.weight.dtype` to cast the pooled vector, as for a linear head.
        return self.dense.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(x)))


def check_head_spec(spec: object) -> dict | None:
    """A saved `head` field, checked: None (linear) or {"type": "mlp", "activation": ...}."""
    if spec is None or spec == {"type": "linear"}:
        return None
    ok = isinstance(spec, dict) and spec.get("type") == "mlp" and spec.get("activation") in HEAD_ACTIVATIONS
    if not ok or set(spec) - {"type", "activation"}:
        raise AdapterError(
            f'\'head\' must be null or {{"type": "mlp", "activation": one of {", ".join(HEAD_ACTIVATIONS)}}}; '
            f"got {str(spec)[:80]}."
        )
    return dict(spec)


def make_head(spec: dict | None, hidden_size: int, num_labels: int) -> nn.Module:
    """The head a spec describes (None: linear), freshly initialised."""
    spec = check_head_spec(spec)
    if spec is None:
        return new_head(hidden_size, num_labels)
    return MLPHead(hidden_size, num_labels, spec["activation"])


def head_spec(head: nn.Module) -> dict | None:
    """What to save about a head so that `make_head` rebuilds it: None for a linear head."""
    if isinstance(head, MLPHead):
        return {"type": "mlp", "activation": head.activation}
    return None


def head_shapes(spec: dict | None, hidden_size: int, num_labels: int) -> dict[str, tuple[int, ...]]:
    """The head's tensors under their portable names (`head.<param>`, as saved) and their shapes."""
    if check_head_spec(spec) is None:
        return {"head.weight": (num_labels, hidden_size), "head.bias": (num_labels,)}
    return {
        "head.dense.weight": (hidden_size, hidden_size),
        "head.dense.bias": (hidden_size,),
        "head.out.weight": (num_labels, hidden_size),
        "head.out.bias": (num_labels,),
    }


def backbone_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last hidden state of the transformer body, skipping any LM head."""
    if getattr(model.config, "is_encoder_decoder", False):
        body = model.get_encoder()
    else:
        body = model.base_model
    kwargs = {"use_cache": False} if "use_cache" in model.config.to_dict() else {}
    out = body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return out.last_hidden_state
