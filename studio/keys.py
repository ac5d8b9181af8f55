"""The studio's two secrets, and the personal API keys signed with one of them.

- The browser secret (ADAPTER_STUDIO_SECRET, or `.browser_secret` in the data directory) encrypts what
  the studio keeps in visitors' browsers (`gr.BrowserState`). Gradio hands it to every browser in its
  public `/config`, so it must never sign anything.
- The signing secret (ADAPTER_STUDIO_KEY_SECRET, or `.api_key_secret`) signs personal API keys. It never
  leaves the server.

Both are made once (0600) so they survive restarts and can be shared by replicas of one data directory.
A personal key names its owner and carries an HMAC of the owner and the owner's key generation, so the
server checks a key without storing any, and a key cannot be forged or turned into another visitor's.
Revoking a key bumps its owner's generation (kept in `api_keys.json`): every older key of theirs stops
working at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path

from adapter_core import AdapterError, write_json_atomic

try:
    import fcntl
except ImportError:  # Windows: one process at a time revokes
    fcntl = None

PREFIX = "as-"
BROWSER_ENV = "ADAPTER_STUDIO_SECRET"
SIGNING_ENV = "ADAPTER_STUDIO_KEY_SECRET"
GENERATIONS_FILE = "api_keys.json"
MAX_REVOKED_ANONYMOUS = 100_000  # owners with a revoked key whom nobody vouches for (free identities)
_KEY = re.compile(r"as-([A-Za-z0-9_-]{1,700})\.([0-9a-f]{40})")
_lock = threading.Lock()


def _secret(home: Path, env: str, filename: str) -> str:
    if os.environ.get(env):
        return os.environ[env]
    path = Path(home) / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip()


def browser_secret(home: Path) -> str:
    """The key of `gr.BrowserState`: public by design (it is in /config), so it signs nothing."""
    return _secret(home, BROWSER_ENV, ".browser_secret")


def signing_secret(home: Path) -> str:
    """The secret that signs personal API keys; it never leaves the server."""
    secret = _secret(home, SIGNING_ENV, ".api_key_secret")
    if hmac.compare_digest(secret.encode(), browser_secret(home).encode()):
        raise AdapterError(
            f"{SIGNING_ENV} must differ from {BROWSER_ENV}: the browser secret is public. Set another value."
        )
    return secret


def personal_key(secret: str, owner: str, generation: int = 0) -> str:
    """The API key that acts as `owner` on the studio's /v1 routes, until its generation is revoked."""
    name = base64.urlsafe_b64encode(owner.encode()).decode().rstrip("=")
    return f"{PREFIX}{name}.{_sign(secret, owner, generation)}"


def claimed_owner(key: str | None) -> str | None:
    """The owner a key names, unchecked; None for anything that is not shaped like a personal key."""
    if not isinstance(key, str) or not key.isascii() or not (match := _KEY.fullmatch(key)):
        return None
    name = match.group(1)
    try:
        return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def owner_of(secret: str, key: str | None, generation: int | None = None) -> str | None:
    """The owner a personal key stands for, or None when it is not a valid key of this studio (signed
    with another secret, for another owner, of another `generation`, or malformed)."""
    owner = claimed_owner(key)
    if owner is None:
        return None
    expected = _sign(secret, owner, generation or 0).encode()
    return owner if hmac.compare_digest(key.rsplit(".", 1)[1].encode(), expected) else None


def _sign(secret: str, owner: str, generation: int) -> str:
    message = f"api-key:v2:{generation}:".encode() + owner.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def _stamp(stat: os.stat_result) -> tuple[int, ...]:
    # Every write replaces the file (a new inode), so a change shows even within one clock tick.
    return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)


class KeyRing:
    """The personal keys of one data directory: make, check and revoke them."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.secret = signing_secret(self.home)
        self.path = self.home / GENERATIONS_FILE
        self._seen: tuple[int, ...] | None = None  # the stamp of the file last read
        self._generations: dict[str, int] = {}

    def key(self, owner: str) -> str:
        return personal_key(self.secret, owner, self.generation(owner))

    def owner_of(self, key: str | None) -> str | None:
        owner = claimed_owner(key)
        return None if owner is None else owner_of(self.secret, key, self.generation(owner))

    def generation(self, owner: str) -> int:
        return self._read().get(owner, 0)

    def revoke(self, owner: str) -> str:
        """End every key of `owner` so far, and return their new one."""
        with self._locked():
            generations = dict(self._read())
            anonymous = not owner.startswith("hf:") and owner not in generations
            if anonymous and sum(not o.startswith("hf:") for o in generations) >= MAX_REVOKED_ANONYMOUS:
                raise AdapterError("This studio cannot revoke more keys of visitors who are not signed in; sign in.")
            generations[owner] = generations.get(owner, 0) + 1
            write_json_atomic(self.path, generations)
            self._generations, self._seen = generations, _stamp(self.path.stat())
        return self.key(owner)

    def _read(self) -> dict[str, int]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        if self._seen != _stamp(stat):
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = None
            if not isinstance(data, dict):  # a damaged file must not reopen revoked keys: refuse them all
                raise AdapterError("The studio's API key records cannot be read; its operator must repair them.")
            self._generations = {k: v for k, v in data.items() if isinstance(v, int)}
            self._seen = _stamp(stat)
        return self._generations

    @contextmanager
    def _locked(self):
        with _lock:
            if fcntl is None:
                yield
                return
            self.home.mkdir(parents=True, exist_ok=True)
            with open(self.home / f".{GENERATIONS_FILE}.lock", "w") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
