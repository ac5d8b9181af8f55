"""The Use tab's handlers, without gradio: classify, route with a fallback, and how to call the API."""

from __future__ import annotations

import os

import pandas as pd

from adapter_core import AdapterError, Route

from .api import KEY_ENV, key_for, revoke_key
from .service import Studio
from .text import md
from .train_view import NONE


def classify_text(studio: Studio, owner: str | None, adapter: str, text: str) -> dict[str, float]:
    if not adapter or adapter == NONE:
        raise AdapterError("Pick a classification adapter (train one, or upload one in the Library).")
    if not (text or "").strip():
        raise AdapterError("Type a sentence to classify.")
    return studio.classify(adapter, [text], owner)[0].probabilities


def check_router(router: str | None) -> None:
    if not router:
        raise AdapterError("Pick a router: a classification adapter trained on departments.")


HANDOFF = "A member of our team will get back to you shortly."


def route_head(
    studio: Studio,
    owner: str | None,
    router: str | None,
    message: str,
    threshold: float | None = None,
    handoff: str | None = None,
) -> tuple[str, Route]:
    """Route one message: the line that says where it went and why, and the route."""
    check_router(router)
    [route] = studio.route(router, [message], owner=owner, threshold=threshold)
    head = f"Router **{md(router)}** chose **{md(route.label)}** ({route.confidence:.1%} confident)"
    if not route.fallback:
        return f"{head} → answered by **{md(route.target)}**", route
    who = "a hand-off message" if handoff else f"the bare base model **{md(studio.fallback_base(owner))}**"
    return f"{head}, but {md(route.reason)} → fallback: {who}", route


def route_table(
    studio: Studio,
    owner: str | None,
    router: str | None,
    text: str,
    threshold: float | None = None,
    handoff: str | None = None,
) -> pd.DataFrame:
    """Route a batch of messages (one per line) and answer each with its department's adapter (or the
    fallback); the answers come from one mixed-adapter batch per base."""
    check_router(router)
    messages = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not messages:
        raise AdapterError("Type the customer messages, one per line.")
    answered = studio.route_and_answer(router, messages, owner=owner, threshold=threshold, handoff=handoff)
    rows = [
        {
            "message": m,
            "department": r.label,
            "confidence": round(r.confidence, 3),
            "answered by": model if not r.fallback else f"fallback: {model}",
            "answer": a,
        }
        for m, (r, model, a) in zip(messages, answered, strict=True)
    ]
    return pd.DataFrame(rows)


def router_threshold(studio: Studio, owner: str | None, router: str | None) -> float:
    """The router's calibrated out-of-scope threshold, for the slider to start on (0: none saved)."""
    if not router:
        return 0.0
    return studio.router_threshold(router, owner) or 0.0


def api_help(studio: Studio, owner: str | None, origin: str, key: str | None = None) -> str:
    """How to call this studio's adapters over HTTP with the official `openai` package, with the
    caller's own key in public mode (`key`: one just made). A key is an identity outside the browser, so in public mode it
    goes to signed-in visitors only (unless the operator opened heavy work to everyone)."""
    studio.policy.check_heavy(studio.owner(owner), "An API key")
    key = key or key_for(studio, owner)
    imports, api_key = "from openai import OpenAI\n", repr(key or "none")
    if key:
        auth = (
            f"Your personal API key (it reaches only your adapters; keep it private):\n\n```\n{key}\n```\n"
            "If it leaked, **Revoke my key** ends it (and every older key of yours) and makes a new one.\n"
        )
    elif os.environ.get(KEY_ENV):
        auth = f"Send the key you set in `{KEY_ENV}`.\n"
        imports, api_key = "import os\n\n" + imports, f'os.environ["{KEY_ENV}"]'
    else:
        auth = f"No key is needed (set `{KEY_ENV}` before starting the studio to require one).\n"
    chat = next(iter(studio.library.names("instruction", owner=studio.owner(owner))), "my-adapter")
    snippet = (
        f"```python\n{imports}\n"
        f'client = OpenAI(base_url="{origin}/v1", api_key={api_key})\n'
        f"reply = client.chat.completions.create(\n"
        f'    model="{chat}", messages=[{{"role": "user", "content": "Where is my parcel?"}}]\n)\n'
        "print(reply.choices[0].message.content)\n```"
    )
    return (
        f"Your adapters answer OpenAI-compatible requests at `{origin}/v1`: `GET /v1/models`, "
        "`POST /v1/chat/completions` (an instruction adapter, a base model, or `auto` with "
        '`"router": "<classification adapter>"`) and `POST /v1/classify`.\n\n' + auth + "\n" + snippet
    )


def revoke_and_help(studio: Studio, owner: str | None, origin: str) -> str:
    """Revoke the caller's personal keys, and show the help with the new one."""
    key = revoke_key(studio, owner)
    return "**Your old key no longer works.** Use the new one below.\n\n" + api_help(studio, owner, origin, key)
