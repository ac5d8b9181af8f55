"""Text that reaches a visitor: user strings escaped for Markdown, server paths kept out of messages, the
CLI's flags kept out of them too, and the one plain name of each metric the studio shows."""

from __future__ import annotations

import re

from adapter_core import METRICS, metric_gloss, metric_label
from adapter_core.share import md  # one escaping for the studio and the model cards

__all__ = ["METRICS", "md", "metric_label", "metrics_line", "redact", "studio_words"]

# An absolute path of two or more parts, Unix or Windows: /home/x/y.csv, C:\data\y.csv.
# Not after a URL's scheme ("hf://datasets/..." is a name the visitor needs, not the server's layout).
_ABS_PATH = re.compile(r"(?<![\w.~])(?<!:)(?<!:/)(?:[A-Za-z]:\\|/)(?:[^\s'\"/\\:*?<>|]+[/\\])+([^\s'\",;:)\]}]*)")
# How a message the CLI and the studio share names both ways to fix it: "(--label-column in the CLI, the
# dropdown in the studio)". The studio keeps its own half.
_BOTH_SURFACES = re.compile(r"\(--[\w-]+ in the CLI, (.+?) in the studio\)")


def redact(message: str) -> str:
    """A message with every absolute path cut to its last part, so no server layout leaks."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a server folder)", message)


def studio_words(message: str) -> str:
    """A message as the studio says it: no server path, and where it names the CLI's flag beside the
    studio's own control, the control alone."""
    return _BOTH_SURFACES.sub(r"(\1)", redact(message))


def metrics_line(metrics: dict) -> str:
    """Numeric metrics in words: "validation loss 0.412 (lower is better), accuracy 0.912"."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            gloss = metric_gloss(key)
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


def time_left(seconds: float) -> str:
    """The one way the studio says how long training has to go, before a run and during it."""
    return f"about {duration(seconds)} left"
