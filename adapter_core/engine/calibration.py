"""The out-of-scope decision of a classification adapter used as a router: a score (`out_of_scope.py`)
and a threshold above which a message goes to the fallback instead of the adapter's top label.

The threshold is set on the in-scope side: the lowest one that keeps a stated share of *all* the
validation rows in scope (1 - `false_rejection`, 95% by default), right or wrong, since a wrongly
classified in-scope message sent to the fallback is still a false rejection. When the user has examples
of out-of-scope messages, they choose among the scores (the one that catches most of them at the stated
rate) and the section reports what it catches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F

from ..errors import AdapterError
from ..inference import classification_outputs
from ..out_of_scope import DEFAULT_SCORE, FALSE_REJECTION, MAX_FIT_ROWS, SCORES, STATS_SCORES, Stats, fit_stats, scores
from .batches import tokenize
from .data import ALIASES, DataError, read_table
from .metrics import eval_batches, eval_mode

CURVE_RATES = tuple(i / 100 for i in range(51))  # the false-rejection rates the saved curve lists


class Predictions(NamedTuple):
    """Per row of a classification dataset, in row order."""

    pred: list[int]  # the top label's index
    conf: list[float]  # its max-softmax confidence (0 where the logits are NaN)
    gold: list[int]  # the gold label's index
    loss: list[float]  # cross-entropy of the gold label
    features: torch.Tensor | None = None  # (rows, hidden): the pooled features the head reads
    logits: torch.Tensor | None = None  # (rows, labels)


@torch.no_grad()
def predictions(model: nn.Module, name: str, ds: Dataset, pad_id: int, batch_size: int = 64) -> Predictions:
    """Adapter `name`'s predictions on `ds` (a tokenized classification dataset, see `batches.tokenize`)
    in one pass, with the pooled features and logits the out-of-scope scores read. A diverged run's NaN
    logits give confidence 0, so a threshold over these stays a number."""
    device = next(model.parameters()).device
    out = Predictions([0] * len(ds), [0.0] * len(ds), [0] * len(ds), [0.0] * len(ds))
    feats: list[torch.Tensor | None] = [None] * len(ds)
    logit_rows: list[torch.Tensor | None] = [None] * len(ds)
    with eval_mode(model):
        for rows, batch in eval_batches(ds, pad_id, batch_size, device):
            pooled, logits = classification_outputs(model, name, batch["input_ids"], batch["attention_mask"])
            logits = logits.float()
            top, best = logits.softmax(-1).max(-1)
            loss = F.cross_entropy(logits, batch["labels"], reduction="none")
            columns = (best.tolist(), top.tolist(), batch["labels"].tolist(), loss.tolist())
            for j, (i, y, c, g, ce) in enumerate(zip(rows, *columns, strict=True)):
                out.pred[i], out.conf[i], out.gold[i], out.loss[i] = y, (c if math.isfinite(c) else 0.0), g, ce
                feats[i], logit_rows[i] = pooled[j].float().cpu(), logits[j].cpu()
    if not len(ds):
        return out
    return out._replace(features=torch.stack(feats), logits=torch.stack(logit_rows))


def confidences(
    model: nn.Module, name: str, ds: Dataset, pad_id: int, batch_size: int = 64
) -> tuple[list[float], list[bool]]:
    """Max-softmax confidence, and whether the top label is the gold one, for each row of `ds`, in row
    order. A row with NaN logits (confidence 0) counts as wrong."""
    p = predictions(model, name, ds, pad_id, batch_size)
    return p.conf, [c > 0 and y == g for y, c, g in zip(p.pred, p.conf, p.gold, strict=True)]


def fit(model: nn.Module, name: str, ds: Dataset, pad_id: int, num_labels: int, seed: int = 0) -> Stats:
    """The distance scores' statistics, from a pass over (up to MAX_FIT_ROWS of) the training rows."""
    if len(ds) > MAX_FIT_ROWS:
        ds = ds.shuffle(seed=seed).select(range(MAX_FIT_ROWS))
    p = predictions(model, name, ds, pad_id)
    return fit_stats(p.features, torch.tensor(p.gold), num_labels, seed=seed, logits=p.logits)


def threshold_for(in_scope: torch.Tensor, false_rejection: float = FALSE_REJECTION) -> float:
    """The lowest threshold that keeps at least 1 - `false_rejection` of the `in_scope` scores at or below
    it (ties keep more). The epsilon stops 0.95 * 100 = 95.00000000000001 from asking for 96 rows."""
    if not (isinstance(false_rejection, (int, float)) and 0 <= false_rejection < 1):
        raise AdapterError(f"The false-rejection rate must be a share from 0 to below 1; got {false_rejection!r}.")
    if not len(in_scope):
        raise AdapterError("No validation rows to calibrate the out-of-scope threshold on.")
    k = max(1, math.ceil((1 - false_rejection) * len(in_scope) - 1e-9))
    value = float(in_scope.double().sort().values[k - 1])
    return value if math.isfinite(value) else float(torch.finfo(torch.float32).max)


def calibrate(
    val: Predictions,
    stats: Stats | None,
    score: str = DEFAULT_SCORE,
    false_rejection: float = FALSE_REJECTION,
    oos: Predictions | None = None,
) -> dict[str, Any]:
    """The `out_of_scope` section of a router's config: the score, its threshold at `false_rejection`
    on all of `val`'s rows, and the curve the studio's slider moves along. With `oos` (predictions on
    out-of-scope examples), the score that catches most of them at that rate, and what it catches."""
    if score not in SCORES:
        raise AdapterError(f"Unknown out-of-scope score {score!r}; choose one of {', '.join(SCORES)}.")
    if val.features is None:
        raise AdapterError("No validation rows to calibrate the out-of-scope threshold on.")
    usable = tuple(s for s in SCORES if s not in STATS_SCORES or (stats is not None and stats.supports(s)))
    on_val = scores(usable, val.features, val.logits, stats)
    on_oos = scores(usable, oos.features, oos.logits, stats) if oos is not None and oos.features is not None else None
    recall = {}
    if on_oos is not None:  # the user's examples pick the score; ties keep the default
        recall = {s: _caught(on_oos[s], threshold_for(on_val[s], false_rejection)) for s in usable}
        score = max(usable, key=lambda s: (recall[s], s == score))
    elif score not in usable:
        score = "msp"
    threshold = threshold_for(on_val[score], false_rejection)
    curve = [threshold_for(on_val[score], r) for r in CURVE_RATES]
    section: dict[str, Any] = {
        "score": score,
        "threshold": threshold,
        "false_rejection": false_rejection,
        "validation_rows": len(val.pred),
        "method": f"The {score} score above which {false_rejection * 100:g}% of the {len(val.pred)} validation "
        "rows (all in scope) lie; messages scoring above it go to the fallback.",
        "curve": {"false_rejection": list(CURVE_RATES), "threshold": curve},
        # What a copy of the adapter without its statistics file falls back on: msp at the same rate
        "msp_threshold": threshold_for(on_val["msp"], false_rejection),
    }
    if on_oos is not None:
        section["oos_rows"] = len(oos.pred)
        section["oos_recall"] = round(recall[score], 4)
        section["curve"]["oos_recall"] = [round(_caught(on_oos[score], t), 4) for t in curve]
    return section


def _caught(oos_scores: torch.Tensor, threshold: float) -> float:
    """The share of out-of-scope scores above the threshold: what the fallback catches."""
    return float((oos_scores > threshold).double().mean())


def oos_predictions(
    model: nn.Module, name: str, path: str, tokenizer, max_length: int, labels: list[str]
) -> Predictions:
    """Predictions on a file of out-of-scope examples (`oos_texts`)."""
    texts = oos_texts(path)
    ds = tokenize(pd.DataFrame({"text": texts, "label": labels[0]}), "classification", tokenizer, max_length, labels)
    return predictions(model, name, ds, tokenizer.pad_token_id)


def oos_texts(path: str | Path) -> list[str]:
    """The messages of a file of out-of-scope examples: its text column (found as in a training file, or
    its only column); any label column is ignored, since none of its rows belongs to a label."""
    frame = read_table(Path(path))
    lower = {c.lower(): c for c in frame.columns}
    column = next((lower[a] for a in ALIASES["text"] if a in lower), frame.columns[0] if frame.shape[1] == 1 else None)
    if column is None:
        raise DataError(
            f"{Path(path).name} has no text column. Columns found: {', '.join(frame.columns)}. Name the column of "
            "out-of-scope messages 'text'."
        )
    texts = [t.strip() for t in frame[column].astype(str) if t.strip()]
    if not texts:
        raise DataError(f"{Path(path).name} holds no out-of-scope message: its {column!r} column is empty.")
    return texts


def ood_metrics(score: str, threshold: float, stats: Stats | None, in_scope: Predictions, oos: Predictions) -> dict:
    """How a score separates in-scope rows from out-of-scope ones: AUROC (out of scope as the positive
    class), the share of out-of-scope rows accepted when 95% of in-scope rows are (FPR at 95% TPR), and,
    at `threshold`, the out-of-scope rows caught and the in-scope rows rejected."""
    from sklearn.metrics import roc_auc_score, roc_curve  # imported here: only evaluations need it

    inside = scores(score, in_scope.features, in_scope.logits, stats)[score].double().numpy()
    outside = scores(score, oos.features, oos.logits, stats)[score].double().numpy()
    y = [0] * len(inside) + [1] * len(outside)
    values = [*inside, *outside]
    fpr, tpr, _ = roc_curve([1 - v for v in y], [-v for v in values])  # in scope as the positive class
    return {
        "score": score,
        "threshold": threshold,
        "in_scope_rows": len(inside),
        "oos_rows": len(outside),
        "auroc": float(roc_auc_score(y, values)),
        "fpr_at_95_tpr": float(fpr[(tpr >= 0.95).argmax()]),
        "oos_recall": float((outside > threshold).mean()),
        "in_scope_false_rejection": float((inside > threshold).mean()),
    }
