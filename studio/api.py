"""The studio's HTTP API: the same OpenAI-compatible routes as `python -m adapter_core serve`, over the
studio's own dispatcher (its library, resident bases and batches), mounted at /v1.

Local mode: one trusted user; a key is needed only when ADAPTER_STUDIO_API_KEY is set. Public mode:
each visitor calls with their personal key (shown in the Use tab, where they can also revoke it) and
reaches only their own adapters and the shared examples, within the studio's quotas.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from adapter_core import AdapterError
from adapter_core.serve import Unauthorized, create_app, static_key

from .keys import KeyRing
from .service import Studio

KEY_ENV = "ADAPTER_STUDIO_API_KEY"


def api_app(studio: Studio) -> FastAPI:
    if not studio.policy.public:
        return create_app(studio.dispatcher, static_key(os.environ.get(KEY_ENV)))
    ring = KeyRing(studio.home)

    def authorize(token: str | None) -> str:
        owner = ring.owner_of(token)
        if owner is None:
            raise Unauthorized(
                "Send your personal API key as 'Authorization: Bearer KEY'; the studio's Use tab shows it (API). "
                "A key you revoked there no longer works."
            )
        return owner

    return create_app(studio.dispatcher, authorize)


def key_for(studio: Studio, owner: str | None) -> str | None:
    """The key this caller uses on /v1: a personal key in public mode; None in local mode (the operator's
    ADAPTER_STUDIO_API_KEY, if set, is theirs to know and is never shown)."""
    if not studio.policy.public:
        return None
    return KeyRing(studio.home).key(studio.owner(owner))


def revoke_key(studio: Studio, owner: str | None) -> str:
    """End every personal key of this caller so far, and return their new one (public mode only)."""
    if not studio.policy.public:
        raise AdapterError(f"This studio has no personal keys; its operator sets {KEY_ENV}.")
    # Checked before any write: a free identity must not grow the generations file (raw queue calls).
    studio.policy.check_heavy(studio.owner(owner), "An API key")
    return KeyRing(studio.home).revoke(studio.owner(owner))
