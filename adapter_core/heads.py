"""Task heads: a linear classifier over a pooled vector. Instruction tuning keeps the base's LM head."""

from __future__ import annotations

import torch
from torch import nn

from .errors import AdapterError

POOLINGS = ("cls", "mean", "last")


def default_pooling(family: str) -> str:
    # Decoders see the whole text only at the last token. For encoders, mean pooling matches how
    # sentence encoders such as all-MiniLM were trained and is robust for MLM-pretrained ones.
    return "last" if family == "decoder" else "mean"


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


def backbone_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last hidden state of the transformer body, skipping any LM head."""
    if getattr(model.config, "is_encoder_decoder", False):
        body = model.get_encoder()
    else:
        body = model.base_model
    kwargs = {"use_cache": False} if "use_cache" in model.config.to_dict() else {}
    out = body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return out.last_hidden_state
