"""The studio's serving operations: classify, chat, route and answer with a visitor's adapters, each checked
against the policy before anything runs. A part of `Studio` (studio/service.py), which holds the state.

On ZeroGPU the checks stay here, in the main process, and the work runs in a GPU lease from the
adapters' folders (studio/gpu_calls.py); elsewhere the dispatcher that also serves the HTTP API runs it.
"""

from __future__ import annotations

import threading

from adapter_core import TASK_ADAPTER, AdapterError, Base, Prediction, Route
from adapter_core.serve import FALLBACK, Dispatcher, ModelPool, Stream

from .gpu_calls import LeasedStream, chat_on_gpu, classify_on_gpu
from .hardware import ON_ZERO_GPU
from .library import Entry, Library
from .policy import Policy

USE = {"classification": "classify", "instruction": "chat"}


class Answering:
    """What `Studio` answers with; it provides these attributes and `owner` and `base`."""

    policy: Policy
    library: Library
    bases: ModelPool
    dispatcher: Dispatcher

    def served(self, adapter: str, task: str | None = None, owner: str | None = None) -> tuple[Base, Entry]:
        """Base and library entry for `adapter`, with the adapter loaded (reloaded if it changed).
        With `task`, the adapter must be of that task."""
        entry = self.entry(adapter, task, owner)
        return self.bases.serve(entry), entry

    def entry(self, adapter: str, task: str | None = None, owner: str | None = None) -> Entry:
        """The library entry of `adapter`, if this owner may use it (and it is of `task`, if given)."""
        entry = self.library.get(adapter, owner=self.owner(owner))
        if task is not None and entry.task != task:
            raise AdapterError(f"{adapter!r} is {TASK_ADAPTER[entry.task]}; pick {TASK_ADAPTER[task]} to {USE[task]}.")
        return entry

    def classify(self, adapters: str | list[str], texts: list[str], owner: str | None = None) -> list[Prediction]:
        """Label `texts` with one classification adapter, or `texts[i]` with `adapters[i]`. Rows whose
        adapters share a base run as one mixed batch."""
        texts = [self.policy.check_prompt(t, "text") for t in texts]
        names = [adapters] * len(texts) if isinstance(adapters, str) else list(adapters)
        checked = {n: self.entry(n, "classification", owner) for n in dict.fromkeys(names)}
        entries = [checked[n] for n in names]
        if ON_ZERO_GPU:  # checked here; computed in a GPU lease, from the adapters' folders
            return classify_on_gpu(entries, texts)
        return self.bases.classify(entries, texts)

    def answer(
        self,
        adapters: list[str | None],
        messages: list[str],
        base_name: str = "",
        max_new_tokens: int = 160,
        owner: str | None = None,
    ) -> list[str]:
        """Greedy answers: `messages[i]` through instruction adapter `adapters[i]` (None: the bare
        `base_name`). Rows on one base join one mixed-adapter batch."""
        messages = [self.policy.check_prompt(m) for m in messages]
        owner = self.owner(owner)
        if None in adapters:
            self.base(base_name)  # the policy's check, and resident for the dispatcher
        models = [a or base_name for a in adapters]
        conversations = [[{"role": "user", "content": m}] for m in messages]
        return [
            s.text() for s in self.dispatcher.chat_many(models, conversations, owner=owner, max_tokens=max_new_tokens)
        ]

    def chat(
        self,
        adapter: str | None,
        base_name: str,
        message: str,
        max_new_tokens: int = 160,
        stop: threading.Event | None = None,
        owner: str | None = None,
    ) -> Stream:
        """Stream the answer of instruction adapter `adapter` (None: the bare base model). Afterwards
        `stream.repeated` tells whether a degenerate loop was cut (show a warning then)."""
        message = self.policy.check_prompt(message)
        owner = self.owner(owner)
        if ON_ZERO_GPU:  # checked here; generated in a GPU lease, from the adapter's folder
            entry = self.entry(adapter, "instruction", owner) if adapter else None
            if entry is None:
                self.policy.check_model(base_name)
            budget = min(max_new_tokens, self.policy.serve_limits().max_new_tokens)
            return LeasedStream(chat_on_gpu(entry, base_name, message, budget), stop)
        if not adapter:
            self.base(base_name)
        messages = [{"role": "user", "content": message}]
        return self.dispatcher.chat(adapter or base_name, messages, owner=owner, max_tokens=max_new_tokens, cancel=stop)

    def route(
        self, router: str, messages: list[str], owner: str | None = None, false_rejection: float | None = None
    ) -> list[Route]:
        """Where the router sends each message: its department's instruction adapter, or the fallback
        when it judges the message out of scope (at its threshold for the in-scope `false_rejection`
        rate; default: its calibrated one)."""
        if len(messages) > self.policy.max_route_messages:
            raise AdapterError(
                f"Route at most {self.policy.max_route_messages} messages at a time; got {len(messages)}."
            )
        messages = [self.policy.check_prompt(m) for m in messages]
        return self.dispatcher.route(messages, self.owner(owner), router, false_rejection)[0]

    def router_meta(self, router: str, owner: str | None = None) -> dict:
        """The saved metadata of one of the caller's routers (its out-of-scope decision and curve)."""
        return self.library.get(router, owner=self.owner(owner)).meta

    def departments(self, router: str, owner: str | None = None) -> dict[str, str | None]:
        """Each of the router's labels -> the caller's department (instruction) adapter that answers it,
        None where none does (those messages fall back), as `route` decides."""
        entry = self.entry(router, "classification", owner)
        routes = self.dispatcher.departments(entry, self.owner(owner))
        return {label: routes.get(label) for label in entry.meta.get("labels") or []}

    def fallback_base(self, owner: str | None = None) -> str | None:
        """The bare base model that answers what no department covers; None while the caller has no
        instruction adapter (no base to answer with: only a hand-off message can)."""
        owner = self.owner(owner)
        if self.dispatcher.fallback is None and not self.library.names("instruction", owner=owner):
            return None
        return self.dispatcher.fallback_model(owner)

    def route_and_answer(
        self,
        router: str,
        messages: list[str],
        owner: str | None = None,
        false_rejection: float | None = None,
        handoff: str | None = None,
        max_new_tokens: int = 160,
    ) -> list[tuple[Route, str, str]]:
        """Route every message, then answer them all in one batch in which each row uses its department's
        adapter: a hub's worth of traffic in one pass over the shared base. Fallback rows get the bare
        base's answer, or the fixed `handoff` message when one is given; with neither (no instruction
        adapter yet) a row keeps its route, answered by "" with an empty answer."""
        routes = self.route(router, messages, owner, false_rejection)
        base = self.fallback_base(owner) if any(r.fallback for r in routes) else ""
        asked = [i for i, r in enumerate(routes) if not r.fallback or (base and not handoff)]
        targets, asking = [routes[i].target for i in asked], [messages[i] for i in asked]
        answers = self.answer(targets, asking, base or "", max_new_tokens, owner) if asked else []
        out = [(r, FALLBACK if handoff else "", handoff or "") for r in routes]  # "": nothing to answer with
        for i, answer in zip(asked, answers, strict=True):
            out[i] = (routes[i], routes[i].target or base, answer)
        return out
