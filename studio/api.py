"""The studio's HTTP API: the same OpenAI-compatible routes as `python -m adapter_core serve`, over the
studio's own dispatcher (its library, resident bases and batches), mounted at /v1.

Local mode: one trusted user; a key is needed only when ADAPTER_STUDIO_API_KEY is set. Public mode:
each visitor calls with their personal key (shown in the Use tab) and reaches only their own adapters
and the shared examples, within the studio's quotas.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from adapter_core.serve import Unauthorized, create_app, static_key

from .keys import owner_of, personal_key, studio_secret
from .service import Studio

KEY_ENV = "ADAPTER_STUDIO_API_KEY"


def api_app(studio: Studio) -> FastAPI:
    if not studio.policy.public:
        return create_app(studio.dispatcher, static_key(os.environ.get(KEY_ENV)))
    secret = studio_secret(studio.home)

    def authorize(token: str | None) -> str:
        owner = owner_of(secret, token)
        if owner is None:
            raise Unauthorized(
                "Send your personal API key as 'Authorization: Bearer KEY'; the studio's Use tab shows it (API)."
            )
        return owner

    return create_app(studio.dispatcher, authorize)


def key_for(studio: Studio, owner: str | None) -> str | None:
    """The key this caller uses on /v1: a personal key in public mode; None in local mode (the operator's
    ADAPTER_STUDIO_API_KEY, if set, is theirs to know and is never shown)."""
    if not studio.policy.public:
        return None
    return personal_key(studio_secret(studio.home), studio.owner(owner))
