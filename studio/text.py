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
