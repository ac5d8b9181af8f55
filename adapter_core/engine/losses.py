"""Task losses: cross-entropy over a classification head, and next-token loss over response tokens only."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..heads import backbone_hidden
from ..inference import classification_logits
from ..selection import use_adapter
from .batches import IGNORE
from .lm_head_loss import lm_head_loss

# Causal LMs whose logits are exactly `lm_head(last hidden state)`. Gemma 2 and 3 soft-cap their logits
# and Granite and Cohere scale them, so those (and any type not listed) take the model's own loss.
PLAIN_LM_HEAD = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo", "olmo2", "gemma", "gpt2", "gpt_neox", "phi", "opt"}
)


def response_loss(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens that carry a label (the response), as the model's own
    loss computes it, but with the LM head run on those positions alone.

    The head is the widest layer of a small LM (SmolLM2: 49,152 logits a token), and about half of the
    tokens of an instruction example are prompt. Their logits, and the log-softmax over them, were
    computed only to be ignored. The labelled ones go through the head a chunk at a time (`lm_head_loss`).
    """
    head = model.get_output_embeddings()
    if model.config.model_type not in PLAIN_LM_HEAD or not isinstance(head, nn.Linear):
        return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    hidden, targets = labelled_hidden(model, input_ids, attention_mask, labels)
    return lm_head_loss(hidden, head, targets)


def labelled_hidden(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden states of the positions that predict a labelled token, and those tokens."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    return backbone_hidden(model, input_ids, attention_mask)[:, :-1][keep], targets[keep]


def task_loss(model: nn.Module, name: str, task: str, batch: dict[str, torch.Tensor]):
    """(mean loss, number of loss tokens or examples, classification logits or None)."""
    if task == "classification":
        logits = classification_logits(model, name, batch["input_ids"], batch["attention_mask"])
        return F.cross_entropy(logits.float(), batch["labels"]), len(batch["labels"]), logits
    with use_adapter(model, name):
        loss = response_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    return loss, int((batch["labels"][:, 1:] != IGNORE).sum()), None
