"""Text that reaches a visitor: user strings escaped for Markdown, server paths kept out of messages."""

from __future__ import annotations

import re

# Enough to stop links, images, HTML, emphasis, tables and LaTeX; plain punctuation stays readable.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#!|~&$])")
# An absolute path of two or more parts, Unix or Windows: /home/x/y.csv, C:\data\y.csv.
_ABS_PATH = re.compile(r"(?<![\w.~])(?:[A-Za-z]:\\|/)(?:[^\s'\"/\\:*?<>|]+[/\\])+([^\s'\",;:)\]}]*)")


def md(text: object) -> str:
    """`text` shown literally inside Markdown: no links, images, HTML or emphasis from user strings."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def redact(message: str) -> str:
    """A message with every absolute path cut to its last part, so no server layout leaks."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a server folder)", message)
