"""What every tab shares: the context of shared components, the visitor's identity, and error messages."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from adapter_core import AdapterError
from adapter_core.engine import COLUMN_ROLES

from ..callers import Caller, request_address
from ..service import Studio
from ..text import studio_words

log = logging.getLogger("adapter_studio")
COLUMNS = COLUMN_ROLES  # the data file's columns, by role
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{24,64}$")


@dataclass
class Ctx:
    """The studio and the components that more than one tab reads or writes."""

    studio: Studio
    owner: gr.State  # the visitor's id (None in local mode until resolved; see `who`)
    browser_id: gr.BrowserState  # an anonymous visitor's token, kept in their browser
    job_id: gr.State
    remembered_job: gr.BrowserState
    source: gr.State  # the loaded data file: {"path", "name"}; the path never leaves the server
    labels: gr.State
    library_changed: gr.State  # bumped whenever a tab changes the library; pickers refresh on it
    components: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.components[key]

    def add(self, **components: Any) -> None:
        self.components.update(components)


def table_file(label: str, **layout: Any) -> gr.File:
    """An upload box for a table (CSV, TSV or JSONL, the formats `read_table` reads), as a path."""
    return gr.File(label=label, file_types=[".csv", ".tsv", ".jsonl"], type="filepath", **layout)


def who(studio: Studio, owner: str | None, request: gr.Request | None) -> Caller | None:
    """The caller's owner id: None in local mode; the signed-in or browser identity resolved at page load;
    else, for an API client that never loads the page, its own session. It carries the request's client
    address, for the limits per address."""
    if not studio.policy.public:
        return None
    if not owner:
        session = getattr(request, "session_hash", None)
        if not session:
            raise AdapterError("This request has no session; reload the page and try again.")
        owner = f"session:{session}"
    address = request_address(request, studio.policy.trust_forwarded) if request is not None else None
    return Caller(str(owner), address)


def identify(studio: Studio, token: str | None, profile: gr.OAuthProfile | None) -> tuple[str | None, str | None]:
    """(owner, token to keep in the browser). Signed-in visitors are their Hugging Face account;
    anonymous ones get a random token that only their browser holds."""
    if not studio.policy.public:
        return None, token
    if not (isinstance(token, str) and _TOKEN.match(token)):
        token = secrets.token_urlsafe(24)
    if profile is not None and getattr(profile, "username", None):
        return f"hf:{profile.username}", token
    return f"anon:{token}", token


def message_of(e: Exception, where: str) -> str:
    """A user's mistake in its own words (no server paths, no CLI flags, HTML escaped); a bug as a plain apology."""
    if isinstance(e, gr.Error):
        return e.message
    if isinstance(e, AdapterError):
        return html.escape(studio_words(str(e)), quote=False)
    log.exception("handler %s failed", where)
    return "Something went wrong on the server; it has been logged. Your runs and adapters are safe."


def friendly(fn):
    """Turn every error into a gradio message: the same for the browser and API callers."""

    def convert(e: Exception) -> gr.Error:
        return gr.Error(message_of(e, fn.__name__))

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise convert(e) from None

        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise convert(e) from None

    return call
