"""The dispatcher: a library of adapters served from resident bases, with a router in front.

One `Dispatcher` answers every serving question the same way for the HTTP API and the studio: which
models a caller may use, which base and adapter a model name means, where the router sends a message,
and how a chat joins its base's batch. It holds no state between requests beyond what is loaded in memory; the
library folder is read on every call, so replicas sharing one folder agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from ..catalog import Base, position_limit
from ..config import TASK_ADAPTER
from ..errors import AdapterError
from ..generation import Row
from ..inference import Prediction, classify, format_chat, prompt_ids
from ..library import Entry, Library
from ..routing import Route, check_false_rejection, decide, department_routes, threshold_at
from .answer import Answer, Stream
from .batcher import Batcher
from .errors import NotFound, WrongTask
from .places import Places
from .pool import ModelPool

AUTO = "auto"  # the model name that asks the router
FALLBACK = "fallback"  # the model name of a fixed hand-off message


@dataclass
class Limits:
    """What one request may ask for, and how requests are batched. The defaults are those of a public
    studio (studio/policy.py), so that a stand-alone server open to strangers is as bounded."""

    max_prompt_chars: int = 4000
    max_new_tokens: int = 512
    max_inputs: int = 256  # texts in one classify request
    max_batch: int = 32  # rows in one decoding batch
    window_s: float = 0.01  # how long the first request of a batch waits for others
    max_waiting: int = 256  # requests queued per base before the server answers 429
    # Answers in progress at once per caller (owner, or client address): each chat is one, a batch of
    # routed messages one per message. None: no cap.
    max_in_flight_per_owner: int | None = 8
    max_body_bytes: int = 2**20  # an HTTP request body, refused (413) before it is read


class Dispatcher:
    def __init__(
        self,
        library: Library,
        pool: ModelPool,
        limits: Limits | None = None,
        router: str | None = None,
        fallback: str | None = None,
        bare_bases: Callable[[], Iterable[str]] = lambda: (),
    ):
        """`bare_bases` names the base models a caller may chat with bare, besides those the library's
        instruction adapters run on (a server must not load whatever model a stranger names)."""
        self.library, self.pool, self.limits = library, pool, limits or Limits()
        self.router, self.fallback, self.bare_bases = router, fallback, bare_bases
        self._batchers: dict[int, Batcher] = {}
        self._lock = threading.Lock()
        self.places = Places(self.limits)

    # What a caller may use --------------------------------------------------------------------------
    def models(self, owner: str | None = None) -> list[dict]:
        """The adapters this caller sees, the bases they run on, and `auto` when a router is set."""
        entries = self.library.entries(owner)
        out = [{"id": e.name, "task": e.task, "base": e.base, "created": int(e.version)} for e in entries]
        bases = dict.fromkeys(e.base for e in entries if e.task == "instruction")
        out += [{"id": b, "task": "base", "base": b, "created": 0} for b in bases if b not in {e.name for e in entries}]
        if self.router:
            out.append({"id": AUTO, "task": "router", "base": None, "router": self.router, "created": 0})
        return out

    def entry(self, model: str, owner: str | None, task: str | None = None) -> Entry:
        """The library adapter `model`, of `task` if given; 404 when this caller has no such model."""
        try:
            entry = self.library.get(model, owner)
        except AdapterError as e:
            raise NotFound(str(e)) from None
        if task and entry.task != task:
            can = {"classification": "classifies and cannot chat", "instruction": "chats and cannot classify"}
            raise WrongTask(
                f"{model!r} is {TASK_ADAPTER[entry.task]}: it {can[entry.task]}. Pick {TASK_ADAPTER[task]}."
            )
        return entry

    def chat_model(self, model: str, owner: str | None) -> tuple[Base, str | None]:
        """The base and adapter (None: the bare base) behind a chat model name."""
        if not isinstance(model, str) or not model:
            raise NotFound("Name a model.")
        try:
            entry = self.library.get(model, owner)
        except AdapterError as missing:
            bases = {e.base for e in self.library.entries(owner) if e.task == "instruction"}
            if model not in bases | set(self.bare_bases()):
                raise NotFound(str(missing)) from None
            base = self.pool.get(model)
            if base.family != "decoder":
                raise WrongTask(f"{model!r} is an encoder model: it classifies and cannot chat.") from None
            return base, None
        entry = self.entry(entry.name, owner, "instruction")
        return self.pool.serve(entry), entry.slot

    # Classifying and routing --------------------------------------------------------------------------
    def classify(self, model: str, texts: Sequence[str], owner: str | None = None) -> tuple[list[Prediction], Entry]:
        """Labels for `texts` from classification adapter `model`, with its library entry."""
        texts = self.check_texts(texts)
        entry = self.entry(model, owner, "classification")
        base = self.pool.serve(entry)
        return classify(base.model, base.tokenizer, texts, entry.slot), entry

    def route(
        self,
        texts: Sequence[str],
        owner: str | None = None,
        router: str | None = None,
        false_rejection: float | None = None,
        routes: dict[str, str] | None = None,
    ) -> tuple[list[Route], str]:
        """Where each text goes, and the router that decided: the request's, else the server's. Out of
        scope by the router's calibrated threshold, or by its threshold for another in-scope
        `false_rejection` rate (the calibrated one where it saved no curve)."""
        check_false_rejection(false_rejection)
        router = router or self.router
        if not router:
            raise AdapterError(f'model={AUTO!r} needs a router: start the server with --router NAME, or pass "router".')
        predictions, entry = self.classify(router, texts, owner)
        threshold = None if false_rejection is None else threshold_at(entry.meta, false_rejection)
        if routes is None:
            routes = self.departments(entry, owner)
        return [decide(p, routes, threshold) for p in predictions], entry.name

    def departments(self, router: Entry, owner: str | None = None) -> dict[str, str]:
        """Router label -> the caller's instruction adapter that answers it; a label missing falls back."""
        return department_routes(router.meta.get("labels") or [], self.library.names("instruction", owner))

    def fallback_model(self, owner: str | None) -> str | None:
        """Where out-of-scope messages go: the configured fallback when it names a model, else the bare
        base the departments run on; None when the fallback is a fixed hand-off message."""
        if self.fallback:
            visible = {m["id"] for m in self.models(owner)}
            return self.fallback if self.fallback in visible else None
        chat = self.library.names("instruction", owner)
        if not chat:
            raise AdapterError("No instruction adapter to answer with; train or upload one.")
        return self.entry(chat[0], owner).base

    # Chatting ----------------------------------------------------------------------------------------
    def prepare(
        self,
        model: str,
        messages: Sequence[dict[str, str]],
        owner: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        router: str | None = None,
        false_rejection: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Everything about answering `messages` with `model` (an instruction adapter, a bare base, or
        `auto`) short of generating: the route, the base, the row. Raises for a request that cannot be
        served, before anything is queued."""
        self.check_texts([m["content"] for m in messages], "conversation")
        route, router_name = None, None
        if model == AUTO:
            user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            (route,), router_name = self.route([user], owner, router, false_rejection)
            model = route.target or self.fallback_model(owner)
            if model is None:  # a fixed hand-off message
                return Answer(FALLBACK, 0, text=self.fallback, route=route, router=router_name)
        base, adapter = self.chat_model(model, owner)
        ids = prompt_ids(base.tokenizer, format_chat(base.tokenizer, messages))
        row = Row(ids, adapter, self.new_tokens(base, len(ids), max_tokens), temperature, top_p, tuple(stop))
        row.cancel = cancel or row.cancel
        return Answer(model, len(ids), base=base, row=row, route=route, router=router_name, owner=owner)

    def start(
        self,
        answers: Sequence[Answer],
        on_text: Sequence[Callable[[str], None]],
        on_end: Sequence[Callable],
        caller: Hashable | None = None,
    ) -> None:
        """Send prepared answers on their way: text to `on_text[i]` as it is made, then `on_end[i](error)`.
        Rows on one base are queued together, so they share a batch. Each row holds one of `caller`'s
        places (default: the answers' owner) until it ends; 429 when they would pass the cap."""
        rows = [a for a in answers if a.row is not None]
        caller = caller if caller is not None else next((a.owner for a in answers), None)
        self.places.take(caller, len(rows))
        by_base: dict[int, list[tuple[Row, Callable]]] = {}
        for answer, text, end in zip(answers, on_text, on_end, strict=True):
            if answer.row is None:  # the fixed hand-off message
                text(answer.text)
                end(None)
                continue
            answer.row.on_text = text
            by_base.setdefault(id(answer.base), []).append((answer.row, self._released(caller, end)))
        queued: set[int] = set()  # ids of the bases whose rows are queued
        try:
            for answer in {id(a.base): a for a in rows}.values():
                self.batcher(answer.base).submit_many(by_base[id(answer.base)])
                queued.add(id(answer.base))
        except BaseException:
            for answer in rows:  # all or nothing: what was queued stops, the rest gives its place back
                if id(answer.base) in queued:
                    self.cancel(answer)
                else:
                    self.places.give_back(caller)
            raise

    def _released(self, caller: Hashable, end: Callable) -> Callable:
        def ended(error: BaseException | None) -> None:
            self.places.give_back(caller)
            end(error)

        return ended

    def cancel(self, answer: Answer) -> None:
        """Stop an answer: at the next decoding step if it is generating, at once if it still waits."""
        if answer.row is None or answer.row.done:
            return
        answer.row.cancel.set()
        batcher = self._batchers.get(id(answer.base))
        if batcher is not None and batcher.base is answer.base:
            batcher.withdraw(answer.row)

    def start_chat(
        self,
        model: str,
        messages: Sequence[dict[str, str]],
        on_text: Callable[[str], None],
        on_end: Callable[[BaseException | None], None],
        caller: Hashable | None = None,
        **kwargs,
    ) -> Answer:
        """Start answering: `prepare`, then `start`. Keyword arguments as in `prepare`."""
        answer = self.prepare(model, messages, **kwargs)
        self.start([answer], [on_text], [on_end], caller)
        return answer

    def chat(self, model: str, messages: Sequence[dict[str, str]], **kwargs) -> Stream:
        """`start_chat` for a caller that reads the answer in its own thread: iterate the stream."""
        return self.chat_many([model], [messages], **kwargs)[0]

    def chat_many(
        self, models: Sequence[str], conversations: Sequence[Sequence[dict[str, str]]], **kwargs
    ) -> list[Stream]:
        """Several answers at once, as streams; those on one base share a batch."""
        answers = [self.prepare(m, c, **kwargs) for m, c in zip(models, conversations, strict=True)]
        streams = [Stream(a) for a in answers]
        self.start(answers, [s.put for s in streams], [s.end for s in streams])
        return streams

    def new_tokens(self, base: Base, prompt_tokens: int, asked: int | None) -> int:
        """How many tokens an answer may have: what was asked, within the limits and the model's reach."""
        budget = min(asked or self.limits.max_new_tokens, self.limits.max_new_tokens)
        reach = position_limit(base.model.config)
        if reach is not None:
            if prompt_tokens >= reach:
                raise AdapterError(
                    f"The conversation is {prompt_tokens:,} tokens; this model reads at most {reach:,}. Shorten it."
                )
            budget = min(budget, reach - prompt_tokens)
        return budget

    def batcher(self, base: Base) -> Batcher:
        """The batcher of `base`, made on first use."""
        with self._lock:
            batcher = self._batchers.get(id(base))
            if batcher is None or batcher.base is not base:
                for key, old in list(self._batchers.items()):  # bases the pool let go of
                    if old.base not in self.pool.resident():
                        old.close()
                        del self._batchers[key]
                limits = self.limits
                batcher = Batcher(base, limits.max_batch, limits.window_s, limits.max_waiting)
                self._batchers[id(base)] = batcher
            return batcher

    def check_texts(self, texts: Sequence[str], what: str = "input") -> list[str]:
        """Texts within the limits: how many, and how long each (or, for a conversation, together)."""
        if len(texts) > self.limits.max_inputs:
            raise AdapterError(f"Send at most {self.limits.max_inputs} inputs at a time; got {len(texts)}.")
        size = max(map(len, texts), default=0) if what == "input" else sum(map(len, texts))
        if size > self.limits.max_prompt_chars:
            raise AdapterError(
                f"The {what} is {size:,} characters; this server takes at most {self.limits.max_prompt_chars:,}."
            )
        return list(texts)
