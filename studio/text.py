"""Text that reaches a visitor: user strings escaped for Markdown, server paths kept out of messages, the
CLI's flags kept out of them too, and the one plain name of each metric the studio shows."""

from __future__ import annotations

import re

from adapter_core.share import md  # one escaping for the studio and the model cards

__all__ = ["md", "metric_label", "metrics_line", "redact", "studio_words"]

# An absolute path of two or more parts, Unix or Windows: /home/x/y.csv, C:\data\y.csv.
_ABS_PATH = re.compile(r"(?<![\w.~])(?:[A-Za-z]:\\|/)(?:[^\s'\"/\\:*?<>|]+[/\\])+([^\s'\",;:)\]}]*)")
# How a message the CLI and the studio share names both ways to fix it: "(--label-column in the CLI, the
# dropdown in the studio)". The studio keeps its own half.
_BOTH_SURFACES = re.compile(r"\(--[\w-]+ in the CLI, (.+?) in the studio\)")

# Each metric the studio shows, by the engine's key: (a short plain label, a gloss where the number alone
# does not say which way is better or what it measures). Tables take the label, lines the label and gloss.
METRICS = {
    "val_loss": ("validation loss", "lower is better"),
    "accuracy": ("accuracy", ""),  # validation or test: the table or line around it says which
    "macro_f1": ("F1 averaged over labels", ""),
    "perplexity": ("perplexity", "lower is better: how surprised the model is by the answers"),
}


def redact(message: str) -> str:
    """A message with every absolute path cut to its last part, so no server layout leaks."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a server folder)", message)


def studio_words(message: str) -> str:
    """A message as the studio says it: no server path, and where it names the CLI's flag beside the
    studio's own control, the control alone."""
    return _BOTH_SURFACES.sub(r"(\1)", redact(message))


def metric_label(key: str) -> str:
    """A metric's plain name: "F1 averaged over labels" for macro_f1; an unknown key as it is."""
    return METRICS[key][0] if key in METRICS else key.replace("_", " ")


def metrics_line(metrics: dict) -> str:
    """Numeric metrics in words: "validation loss 0.412 (lower is better), accuracy 0.912"."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            gloss = METRICS[key][1] if key in METRICS else ""
            parts.append(f"{metric_label(key)} {value:.3f}" + (f" ({gloss})" if gloss else ""))
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """A span of time as the studio says it everywhere: "40 s", "3 min", "1.5 h" (rounded, never "0 min")."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 5400:
        return f"{max(1, round(seconds / 60)):.0f} min"
    return f"{seconds / 3600:.1f} h"
