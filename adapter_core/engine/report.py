"""Evaluation you can read, for classification: precision, recall, F1 and support per class, a confusion
matrix with an order of the classes that makes the confusions stand out, and the misclassified rows.

The numbers follow scikit-learn's `precision_recall_fscore_support(..., zero_division=0)`: a class
that is never predicted has precision 0 (not NaN), one absent from the gold labels has recall 0, and
the macro average is taken over the classes that occur in the gold labels or the predictions (as
`metrics.macro_f1`, which training reports), the weighted one by support.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from torch import nn

from ..errors import AdapterError
from .calibration import Predictions, predictions

REPORT_FILE = "report.json"  # in a finished classification run's folder


def correct(report: dict[str, Any]) -> int:
    """How many rows a report's model got right: its confusion matrix's diagonal."""
    matrix = report["confusion"]
    return sum(matrix[k][k] for k in range(len(matrix)))


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0  # scikit-learn's zero_division=0


def per_class(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict[str, Any]:
    """Precision, recall, F1 and support of each class (indices into `labels`), with accuracy and the
    macro and weighted averages. A class with no predictions has precision 0, not NaN."""
    if len(y_true) != len(y_pred):
        raise AdapterError(f"Got {len(y_true)} gold labels but {len(y_pred)} predictions; give one per row.")
    n = len(labels)
    matrix = confusion(y_true, y_pred, n)
    classes, seen = [], []
    for k, label in enumerate(labels):
        tp = matrix[k][k]
        support = sum(matrix[k])
        predicted = sum(row[k] for row in matrix)
        classes.append(
            {
                "label": label,
                "precision": _ratio(tp, predicted),
                "recall": _ratio(tp, support),
                "f1": _ratio(2 * tp, support + predicted),
                "support": support,
            }
        )
        if support or predicted:
            seen.append(classes[-1])
    total = len(y_true)
    keys = ("precision", "recall", "f1")
    return {
        "classes": classes,
        "accuracy": _ratio(sum(matrix[k][k] for k in range(n)), total),
        "macro": {key: sum(c[key] for c in seen) / len(seen) if seen else 0.0 for key in keys},
        "weighted": {key: _ratio(sum(c[key] * c["support"] for c in classes), total) for key in keys},
    }


def confusion(y_true: list[int], y_pred: list[int], n: int) -> list[list[int]]:
    """An n x n count matrix: row = the true class, column = the predicted one."""
    matrix = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, y_pred, strict=True):
        if not (0 <= t < n and 0 <= p < n):
            raise AdapterError(f"Class index {t if not 0 <= t < n else p} is outside the {n} labels.")
        matrix[t][p] += 1
    return matrix


def confusion_order(matrix: list[list[int]]) -> list[int]:
    """An order of the classes for drawing `matrix`: the pair of classes most often confused with each
    other first (the one whose rows were mistaken more often leading), then the next pair, so that the
    biggest off-diagonal counts sit next to the diagonal at the top; classes never confused come last,
    in their own order."""
    n = len(matrix)
    pairs = sorted(
        (
            (matrix[i][j] + matrix[j][i], max(matrix[i][j], matrix[j][i]), i, j)
            for i in range(n)
            for j in range(i + 1, n)
        ),
        key=lambda p: (-p[0], -p[1], p[2], p[3]),
    )
    order: list[int] = []
    placed: set[int] = set()
    for both, _, i, j in pairs:
        if not both:
            break
        first, second = (i, j) if matrix[i][j] >= matrix[j][i] else (j, i)
        for k in (first, second):
            if k not in placed:
                order.append(k)
                placed.add(k)
    return order + [k for k in range(n) if k not in placed]


def classification_report(
    model: nn.Module, name: str, ds: Dataset, texts: list[str], labels: list[str], pad_id: int, limit: int = 50
) -> dict[str, Any]:
    """Adapter `name`'s per-class metrics, confusion matrix (with `confusion_order`) and its most
    confident mistakes (at most `limit`) on `ds`, a tokenized classification dataset whose rows are
    `texts` in the same order (see `batches.tokenize`)."""
    if len(texts) != len(ds):
        raise AdapterError(f"Got {len(texts)} texts for {len(ds)} rows; give the text of each row, in order.")
    return report_from(predictions(model, name, ds, pad_id), texts, labels, limit)


def report_from(p: Predictions, texts: list[str], labels: list[str], limit: int = 50) -> dict[str, Any]:
    """`classification_report` from predictions already made (`calibration.predictions`)."""
    matrix = confusion(p.gold, p.pred, len(labels))
    wrong = sorted((i for i in range(len(p.pred)) if p.pred[i] != p.gold[i]), key=lambda i: (-p.conf[i], i))
    return {
        "labels": list(labels),
        "per_class": per_class(p.gold, p.pred, labels),
        "confusion": matrix,
        "order": confusion_order(matrix),
        "misclassified": [
            {
                "text": texts[i],
                "true": labels[p.gold[i]],
                "predicted": labels[p.pred[i]],
                "confidence": round(p.conf[i], 4),
            }
            for i in wrong[:limit]
        ],
        "rows": len(p.pred),
    }


def format_per_class(report: dict[str, Any]) -> str:
    """The per-class table as plain text (the CLI's): one line per class, then the averages."""
    pc = report["per_class"]
    width = max([len("weighted avg")] + [len(c["label"]) for c in pc["classes"]])
    lines = [f"{'class':<{width}}  precision  recall      f1  support"]
    for c in pc["classes"]:
        lines.append(
            f"{c['label']:<{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:6.3f}  {c['support']:7d}"
        )
    for key in ("macro", "weighted"):
        avg = pc[key]
        lines.append(
            f"{key + ' avg':<{width}}  {avg['precision']:9.3f}  {avg['recall']:6.3f}  {avg['f1']:6.3f}  {report['rows']:7d}"
        )
    return "\n".join(lines)
