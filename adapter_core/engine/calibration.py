"""An out-of-scope threshold for a classification adapter used as a router: below it, a message goes to
a fallback instead of the adapter's top label.

No out-of-scope examples exist at training time, so the threshold is set on the in-scope side alone:
the highest one that keeps a target share of the correctly classified validation rows (95%, the usual
"in-scope recall" operating point), judged by top-class confidence (max softmax probability).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F

from ..errors import AdapterError
from ..inference import classification_logits
from .metrics import eval_batches, eval_mode

IN_SCOPE_RECALL = 0.95


class Predictions(NamedTuple):
    """Per row of a classification dataset, in row order."""

    pred: list[int]  # the top label's index
    conf: list[float]  # its max-softmax confidence (0 where the logits are NaN)
    gold: list[int]  # the gold label's index
    loss: list[float]  # cross-entropy of the gold label


@torch.no_grad()
def predictions(model: nn.Module, name: str, ds: Dataset, pad_id: int, batch_size: int = 64) -> Predictions:
    """Adapter `name`'s predictions on `ds` (a tokenized classification dataset, see `batches.tokenize`)
    in one pass. A diverged run's NaN logits give confidence 0, so a threshold over these stays a number."""
    device = next(model.parameters()).device
    out = Predictions([0] * len(ds), [0.0] * len(ds), [0] * len(ds), [0.0] * len(ds))
    with eval_mode(model):
        for rows, batch in eval_batches(ds, pad_id, batch_size, device):
            logits = classification_logits(model, name, batch["input_ids"], batch["attention_mask"]).float()
            top, best = logits.softmax(-1).max(-1)
            loss = F.cross_entropy(logits, batch["labels"], reduction="none")
            columns = (best.tolist(), top.tolist(), batch["labels"].tolist(), loss.tolist())
            for i, y, c, g, ce in zip(rows, *columns, strict=True):
                out.pred[i], out.conf[i], out.gold[i], out.loss[i] = y, (c if math.isfinite(c) else 0.0), g, ce
    return out


def confidences(
    model: nn.Module, name: str, ds: Dataset, pad_id: int, batch_size: int = 64
) -> tuple[list[float], list[bool]]:
    """Max-softmax confidence, and whether the top label is the gold one, for each row of `ds`, in row
    order. A row with NaN logits (confidence 0) counts as wrong."""
    return scored(predictions(model, name, ds, pad_id, batch_size))


def scored(p: Predictions) -> tuple[list[float], list[bool]]:
    """`confidences` from predictions already made."""
    return p.conf, [c > 0 and y == g for y, c, g in zip(p.pred, p.conf, p.gold, strict=True)]


def calibrate(conf: list[float], correct: list[bool], in_scope_recall: float = IN_SCOPE_RECALL) -> dict[str, Any]:
    """The threshold that keeps at least `in_scope_recall` of the correctly classified rows (all rows
    when none is correct) at a confidence at or above it, with how it was chosen."""
    if not (isinstance(in_scope_recall, (int, float)) and 0 < in_scope_recall <= 1):
        raise AdapterError(f"in_scope_recall must be a share above 0 and at most 1; got {in_scope_recall!r}.")
    if len(conf) != len(correct):
        raise AdapterError(f"Got {len(conf)} confidences but {len(correct)} correctness flags; give one per row.")
    if not conf:
        raise AdapterError("No validation rows to calibrate the out-of-scope threshold on.")
    kept = [c for c, ok in zip(conf, correct, strict=True) if ok]
    which = f"{len(kept)} correctly classified validation rows"
    if not kept:
        kept, which = list(conf), f"{len(conf)} validation rows (none was classified correctly)"
    # The k-th highest confidence, k = ceil(recall * n): exactly the share asked for stays at or above it
    # (ties keep more). The epsilon stops 0.95 * 100 = 95.00000000000001 from asking for 96 rows.
    k = max(1, math.ceil(in_scope_recall * len(kept) - 1e-9))
    value = min(max(sorted(kept, reverse=True)[k - 1], 0.0), 1.0)
    threshold = round(value, 4)
    if threshold > value:  # rounded down, so that the k-th row is still kept
        threshold = round(threshold - 1e-4, 4)
    return {
        "threshold": max(threshold, 0.0),
        "in_scope_recall": in_scope_recall,
        "validation_rows": len(conf),
        "method": f"The confidence (max softmax probability) that {in_scope_recall * 100:g}% of the {which} "
        "reach or exceed; messages below it go to the fallback.",
    }


def calibrate_predictions(p: Predictions, in_scope_recall: float = IN_SCOPE_RECALL) -> dict[str, Any]:
    """`calibrate` over a classification adapter's predictions on its validation set."""
    return calibrate(*scored(p), in_scope_recall)
