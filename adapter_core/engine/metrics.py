"""Evaluation: validation loss, accuracy and macro-F1 for classification; loss and perplexity for instructions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader

from .batches import LengthGroupedBatches, collate
from .losses import task_loss


def macro_f1(pred: list[int], gold: list[int], num_labels: int) -> float:
    """Unweighted mean of per-label F1 over the labels that occur in gold or predictions."""
    scores = []
    for k in range(num_labels):
        tp = sum(p == k and g == k for p, g in zip(pred, gold, strict=True))
        fp = sum(p == k and g != k for p, g in zip(pred, gold, strict=True))
        fn = sum(p != k and g == k for p, g in zip(pred, gold, strict=True))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """`model` in eval mode for the block, then each module back in its own mode: training may keep the
    frozen base in eval mode (`train_mode`), so one `model.train()` would not restore it."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def eval_batches(
    dataset: Dataset, pad_id: int, batch_size: int, device: torch.device
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(dataset rows, padded batch on `device`) for a pass over a tokenized dataset, in length-grouped
    batches in a fixed order, so that passes agree and per-row results can be put back in row order."""
    order = LengthGroupedBatches(dataset["length"], batch_size, seed=0).batches()
    loader = DataLoader(dataset, batch_sampler=order, collate_fn=partial(collate, pad_id=pad_id))
    for rows, batch in zip(order, loader, strict=True):
        yield rows, {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    name: str,
    task: str,
    dataset: Dataset,
    pad_id: int,
    batch_size: int = 64,
    num_labels: int = 0,
) -> dict[str, float]:
    device = next(model.parameters()).device
    total, count, pred, gold = 0.0, 0, [], []
    with eval_mode(model):
        for _, batch in eval_batches(dataset, pad_id, batch_size, device):
            loss, n, logits = task_loss(model, name, task, batch)
            total += float(loss) * n
            count += n
            if logits is not None:
                pred += logits.argmax(-1).tolist()
                gold += batch["labels"].tolist()
    loss = total / max(count, 1)
    if task == "classification":
        accuracy = sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)
        return {"val_loss": loss, "accuracy": accuracy, "macro_f1": macro_f1(pred, gold, num_labels)}
    return {"val_loss": loss, "perplexity": math.exp(min(loss, 50.0))}


RANK_METRIC = {"classification": "accuracy", "instruction": "val_loss"}  # what `rank_key` ranks runs by first


def rank_key(task: str, metrics: dict[str, float] | None) -> tuple:
    """Sort key, best first: accuracy (then lower loss) for classification, loss for instruction; no
    evaluation yet last. Checkpoint selection and the sweeps' rankings both order by it."""
    if not metrics:
        return (1, 0.0, 0.0)
    if task == "classification":
        return (0, -metrics["accuracy"], metrics["val_loss"])
    return (0, metrics["val_loss"], 0.0)


def is_better(task: str, new: dict[str, float], best: dict[str, float] | None) -> bool:
    return rank_key(task, new) < rank_key(task, best)
