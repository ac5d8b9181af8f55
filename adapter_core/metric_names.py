"""The one plain name of each metric a run reports, by the engine's key, for the studio and the model cards
alike: a reader sees "F1 averaged over labels", never `macro_f1`."""

from __future__ import annotations

# (a short plain label, a gloss where the number alone does not say which way is better or what it measures).
# Tables take the label, lines the label and gloss.
METRICS = {
    "val_loss": ("validation loss", "lower is better"),
    "accuracy": ("accuracy", ""),  # validation or test: the table or line around it says which
    "macro_f1": ("F1 averaged over labels", ""),
    "perplexity": ("perplexity", "lower is better: how surprised the model is by the answers"),
    # A router on out-of-scope messages (an evaluation with out-of-scope rows).
    "auroc": ("out-of-scope AUROC", "higher is better: 1 sets every out-of-scope message apart, 0.5 is chance"),
    "fpr_at_95_tpr": ("out of scope let through at 95% in scope kept", "lower is better"),
    "oos_recall": ("out of scope caught at its threshold", "higher is better"),
    "in_scope_false_rejection": ("in scope rejected at its threshold", "lower is better"),
    "oos_rows": ("out-of-scope rows", ""),
}


def metric_label(key: str) -> str:
    """A metric's plain name: "F1 averaged over labels" for macro_f1; an unknown key without underscores."""
    return METRICS[key][0] if key in METRICS else key.replace("_", " ")


def metric_gloss(key: str) -> str:
    """What a metric's number means, where its name does not say ("lower is better"); else ""."""
    return METRICS[key][1] if key in METRICS else ""
