"""Text that reaches a visitor: user strings escaped for Markdown, server paths kept out of messages."""

from __future__ import annotations

import re

from adapter_core.share import md  # one escaping for the studio and the model cards

__all__ = ["md", "redact"]

# An absolute path of two or more parts, Unix or Windows: /home/x/y.csv, C:\data\y.csv.
_ABS_PATH = re.compile(r"(?<![\w.~])(?:[A-Za-z]:\\|/)(?:[^\s'\"/\\:*?<>|]+[/\\])+([^\s'\",;:)\]}]*)")


def redact(message: str) -> str:
    """A message with every absolute path cut to its last part, so no server layout leaks."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a server folder)", message)


def duration(seconds: float) -> str:
    """A span of time as the studio says it everywhere: "40 s", "3 min", "1.5 h" (rounded, never "0 min")."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 5400:
        return f"{max(1, round(seconds / 60)):.0f} min"
    return f"{seconds / 3600:.1f} h"
