"""The Use tab's handlers, without gradio: classify, route with a fallback, and how to call the API."""

from __future__ import annotations

import os

import pandas as pd

from adapter_core import FALSE_REJECTION, AdapterError, Route, curve_point, out_of_scope_rule

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
ROUTED_COLUMNS = ["message", "department", "confidence", "in scope", "answered by", "answer"]
MAP_COLUMNS = ["label", "department adapter"]


def how_to_add(label: str) -> str:
    """How to give a label a department, in the studio's words (a department answers the labels its
    name contains: `adapter_core.routing.department_routes`)."""
    return (
        f"To add one, train an instruction adapter (Data tab: task **instruction**) whose name contains the "
        f"label, such as **{md(label)}-help** for **{md(label)}**, or upload one in the Library."
    )


def route_head(
    studio: Studio,
    owner: str | None,
    router: str | None,
    message: str,
    false_rejection: float | None = None,
    handoff: str | None = None,
) -> tuple[str, Route]:
    """Route one message: the line that says where it went and why, and the route. Without any
    instruction adapter (and no hand-off message) the decision still shows, with how to add a department."""
    check_router(router)
    [route] = studio.route(router, [message], owner=owner, false_rejection=false_rejection)
    score = "" if route.ood_score is None else f", out-of-scope score {route.ood_score:.3g}"
    head = f"Router **{md(router)}** chose **{md(route.label)}** ({route.confidence:.1%} confident{score})"
    if not route.fallback:
        return f"{head} → answered by **{md(route.target)}**", route
    base = None if handoff else studio.fallback_base(owner)
    if not handoff and base is None:
        return (
            f"{head}, but {md(route.reason)} → fallback. No department adapter exists yet, so nothing answers. "
            f"{how_to_add(route.label)}",
            route,
        )
    who = "a hand-off message" if handoff else f"the bare base model **{md(base)}**"
    return f"{head}, but {md(route.reason)} → fallback: {who}", route


def route_table(
    studio: Studio,
    owner: str | None,
    router: str | None,
    text: str,
    false_rejection: float | None = None,
    handoff: str | None = None,
) -> pd.DataFrame:
    """Route a batch of messages (one per line) and answer each with its department's adapter (or the
    fallback); the answers come from one mixed-adapter batch per base. Without any instruction adapter
    each row still shows where it was routed."""
    check_router(router)
    messages = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not messages:
        raise AdapterError("Type the customer messages, one per line.")
    answered = studio.route_and_answer(router, messages, owner=owner, false_rejection=false_rejection, handoff=handoff)
    rows = [
        {
            "message": m,
            "department": r.label,
            "confidence": round(r.confidence, 3),
            "in scope": r.in_scope,
            "answered by": model if not r.fallback else f"fallback: {model or 'none yet (no department adapter)'}",
            "answer": a,
        }
        for m, (r, model, a) in zip(messages, answered, strict=True)
    ]
    return pd.DataFrame(rows, columns=ROUTED_COLUMNS)


def department_map(
    studio: Studio, owner: str | None, router: str | None, missing_ok: bool = False
) -> tuple[str, pd.DataFrame]:
    """Which department adapter answers each of the router's labels, and which labels fall back: a line
    in words and the table "label -> department adapter (or fallback)". With `missing_ok` (the library
    changed under the picked router: renamed or deleted) a router no longer there shows nothing."""
    gone = missing_ok and router not in studio.library.names("classification", owner=studio.owner(owner))
    if not router or gone:
        return "", pd.DataFrame(columns=MAP_COLUMNS)
    departments = studio.departments(router, owner)
    base = studio.fallback_base(owner)
    fallback = f"fallback: the bare base model {base}" if base else "fallback: no answer yet"
    table = pd.DataFrame(
        [{"label": label, "department adapter": name or fallback} for label, name in departments.items()],
        columns=MAP_COLUMNS,
    )
    missing = [label for label, name in departments.items() if name is None]
    if not missing:
        return f"Every label of **{md(router)}** has a department adapter.", table
    if len(missing) == len(departments) and base is None:
        line = (
            f"No department adapter exists yet: **{md(router)}** still shows its decision, but nothing answers. "
            + how_to_add(missing[0])
        )
    else:
        fall = f"the bare base model **{md(base)}**" if base else "no answer until a department adapter exists"
        line = f"{len(missing)} of {len(departments)} labels have no department adapter and fall back to {fall}."
    return line + " A hand-off message, when set, answers the fallback instead.", table


def router_rate(studio: Studio, owner: str | None, router: str | None) -> float:
    """The in-scope false-rejection rate the router was calibrated for, for the slider to start on (5%
    for a router saved before rates were named)."""
    if not router:
        return FALSE_REJECTION
    rule = out_of_scope_rule(studio.router_meta(router, owner))
    return (rule or {}).get("false_rejection") or FALSE_REJECTION


def rate_note(studio: Studio, owner: str | None, router: str | None, false_rejection: float) -> str:
    """What the slider's rate does, on the router's validation data: the in-scope messages it sends to
    the fallback and, when the router was trained with out-of-scope examples, the share of those caught."""
    if not router:
        return ""
    meta = studio.router_meta(router, owner)
    rule = out_of_scope_rule(meta)
    if rule is None:
        return "This router has no out-of-scope threshold: every message goes to its label's department."
    point = curve_point(meta, false_rejection)
    if point is None:
        return (
            "This router was trained before out-of-scope scores: it keeps its calibrated confidence threshold "
            "whatever the slider says. Train it again to choose the rate."
        )
    caught = f", and catches {point['oos_recall']:.0%} of its out-of-scope examples" if "oos_recall" in point else ""
    return (
        f"On its validation data, the **{md(rule['score'])}** score at this setting sends "
        f"{point['false_rejection']:.0%} of in-scope messages to the fallback{caught}."
    )


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
