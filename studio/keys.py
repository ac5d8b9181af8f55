"""The studio's secret, and the personal API keys derived from it.

One secret (from ADAPTER_STUDIO_SECRET, or a file made once in the data directory, so it survives
restarts and can be shared by replicas) encrypts visitors' tokens in their browsers and signs their
API keys. A personal key names its owner and carries an HMAC of it, so the server checks a key without
storing any, and a key cannot be forged or turned into another visitor's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

PREFIX = "as-"


def studio_secret(home: Path) -> str:
    if os.environ.get("ADAPTER_STUDIO_SECRET"):
        return os.environ["ADAPTER_STUDIO_SECRET"]
    path = Path(home) / ".browser_secret"
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _sign(secret: str, owner: str) -> str:
    return hmac.new(secret.encode(), b"api-key:" + owner.encode(), hashlib.sha256).hexdigest()[:40]


def personal_key(secret: str, owner: str) -> str:
    """The API key that acts as `owner` on the studio's /v1 routes."""
    name = base64.urlsafe_b64encode(owner.encode()).decode().rstrip("=")
    return f"{PREFIX}{name}.{_sign(secret, owner)}"


def owner_of(secret: str, key: str | None) -> str | None:
    """The owner a personal key stands for, or None when it is not a valid key of this studio."""
    if not key or not key.startswith(PREFIX) or "." not in key or len(key) > 1024:
        return None
    name, signature = key[len(PREFIX) :].rsplit(".", 1)
    try:
        owner = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return owner if hmac.compare_digest(signature, _sign(secret, owner)) else None
