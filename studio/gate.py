"""The front door of a public studio: Gradio's queue sized for a small machine, and what one client may
hold of it, before any handler runs.

Identities are free (every raw queue call may bring a new session), so the door counts client addresses
(`callers.client_address`) and sessions, and admits an event only while that address and that session
hold less than a fair share (`Policy.share`) of the place it asks for:

- the queue as a whole (`queue_size` events waiting, besides those running);
- the serve group (classify, chat, route, compare: `serve_slots` at once) and the heavy group (data,
  evaluations, submits, library files, the Hub: `heavy_slots` at once), counting waiting and running;
- /v1 requests in flight (a share of the dispatcher's waiting room);
- uploads to Gradio's cache (`upload_budget`: a few at once, and a byte budget an hour per address).

Beyond that, the join is answered 429 at once: a flood from one address waits in no queue and takes no
place from anyone else. Everything else is Gradio's own (`max_size`, `concurrency_id`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

from .callers import client_address
from .policy import Policy
from .upload_budget import UploadBudget

log = logging.getLogger("adapter_studio")
SERVE, HEAVY = "serve", "heavy"
SERVE_EVENTS = {"classify", "chat", "route", "route_many", "compare"}
HEAVY_EVENTS = {
    "load_data",
    "attach_oos",  # reads and checks up to a data file's row cap
    "load_model",  # may load a base from disk (seconds, and its memory)
    "load_hub_data",
    "look_up_hub",
    "hub_dataset_info",
    "use_bundled_sample",
    "reread",
    "remap",
    "start_training",
    "resume_run",
    "sweep",
    "evaluate",
    "upload_adapter",
    "download_adapter",
    "pull_adapter",
    "push_adapter",
    "push_pack",
    "export_adapter",
    "pack_hub",
}
MAX_JOIN_BYTES = 2 * 2**20  # a queue join carries inputs (a prompt, a chat's history), never files


def configure_queue(demo: Any, policy: Policy) -> None:
    """Put each event in its concurrency group: serving ones share `serve_slots`, heavy ones
    `heavy_slots`; the rest keep the default (`light_slots` each)."""
    for fn in demo.fns.values():
        if fn.name in SERVE_EVENTS:
            fn.concurrency_id, fn.concurrency_limit = SERVE, policy.serve_slots
        elif fn.name in HEAVY_EVENTS:
            fn.concurrency_id, fn.concurrency_limit = HEAVY, policy.heavy_slots


def gate(demo: Any, policy: Policy, largest_file: int) -> Middleware:
    """The middleware to launch the studio's app with (`largest_file`: Gradio's `max_file_size`, in bytes)."""
    return Middleware(Gate, blocks=demo, policy=policy, largest_file=largest_file)


class Gate:
    """ASGI middleware: admission per address and per session to Gradio's queue and to /v1."""

    def __init__(self, app: Any, blocks: Any, policy: Policy, largest_file: int):
        self.app, self.blocks, self.policy = app, blocks, policy
        self.uploads = UploadBudget(policy.max_upload_bytes_per_address, largest_file)
        self._admitting: Counter = Counter()  # joins being handed to the queue: per address, and per group
        self._in_flight: Counter = Counter()  # /v1 requests, per address
        self._warned = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, root = scope.get("path", ""), scope.get("root_path", "")
        path = path[len(root) :] if root and path.startswith(root) else path
        if path == "/v1" or path.startswith("/v1/"):
            return await self._v1(scope, receive, send)
        if scope.get("method") == "POST" and (path.endswith("/queue/join") or "/gradio_api/call/" in path):
            return await self._join(scope, receive, send)
        if scope.get("method") == "POST" and path.rstrip("/").endswith("/upload"):
            return await self._upload(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _upload(self, scope: dict, receive: Any, send: Any) -> None:
        address = self._address(scope)
        refusal = self.uploads.refusal(address, _content_length(scope))
        if refusal:
            log.info("Refused an upload from %s: %s", address, refusal)
            return await _refuse(scope, receive, send, refusal, 429)
        try:
            await self.app(scope, receive, send)
        finally:
            self.uploads.done(address)

    # /v1 ----------------------------------------------------------------------------------------------
    async def _v1(self, scope: dict, receive: Any, send: Any) -> None:
        address = self._address(scope)
        limit = self.policy.share(self.policy.serve_limits().max_waiting)
        if self._in_flight[address] >= limit:
            message = f"Your network has {limit} requests in progress on this studio; wait for one to finish."
            body = {"error": {"message": message, "type": "rate_limit_exceeded", "param": None, "code": "busy"}}
            return await JSONResponse(body, status_code=429)(scope, receive, send)
        self._in_flight[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._release(self._in_flight, address)

    # Gradio's queue -----------------------------------------------------------------------------------
    async def _join(self, scope: dict, receive: Any, send: Any) -> None:
        body = await _read_body(receive, MAX_JOIN_BYTES)
        if body is None:
            return await _refuse(scope, receive, send, "This request is too large.", 413)
        address, session = self._address(scope), _session(body)
        group = getattr(self._fn(scope.get("path", ""), body), "concurrency_id", None)
        refusal = self._refusal(address, session, group)
        if refusal:
            log.info("Refused a queue join from %s: %s", address, refusal)
            return await _refuse(scope, receive, send, refusal, 429)
        # Until Gradio has queued the event (it answers once it has), it is counted here instead.
        keys = [(address, None), (address, group), (session, group)]
        self._admitting.update(keys)
        admitted = False

        async def answer(message: dict) -> None:
            nonlocal admitted
            if not admitted and message["type"] == "http.response.start":
                admitted = True
                self._admitting.subtract(keys)
            await send(message)

        try:
            await self.app(scope, _replay(body, receive), answer)
        finally:
            if not admitted:
                self._admitting.subtract(keys)
            for key in keys:
                if self._admitting[key] <= 0:
                    del self._admitting[key]

    def _refusal(self, address: str, session: str | None, group: str | None) -> str | None:
        """Why this address or session may not add an event now, if it may not."""
        policy = self.policy
        held = self._held()
        mine = [e for e in held if e[0] == address]
        queue_share = policy.share(policy.queue_size)
        if len(mine) + self._admitting[(address, None)] >= queue_share:
            return (
                f"Your network has {len(mine)} requests waiting or running in this studio (a fair share is "
                f"{queue_share}); wait for them to finish."
            )
        slots = {SERVE: policy.serve_slots, HEAVY: policy.heavy_slots}.get(group)
        if slots is None:
            return None
        share = policy.share(slots)
        by_address = sum(1 for e in mine if e[2] == group) + self._admitting[(address, group)]
        by_session = sum(1 for e in held if e[1] == session and e[2] == group) + self._admitting[(session, group)]
        by_session = by_session if session else 0
        if max(by_address, by_session) >= share:
            what = "answers" if group == SERVE else "data, evaluation, training or library requests"
            return (
                f"You have {max(by_address, by_session)} {what} waiting or running (the share of one visitor is "
                f"{share}); wait for one to finish."
            )
        return None

    def _held(self) -> list[tuple[str, str | None, str | None]]:
        """(address, session, group) of every event in Gradio's queue, waiting or running."""
        queue = getattr(self.blocks, "_queue", None)
        try:  # gradio's own bookkeeping (pinned in requirements.txt): waiting per group, and running
            events = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
            events += [e for batch in list(queue.active_jobs) if batch for e in batch]
        except AttributeError:
            if not self._warned:
                self._warned = True
                log.error("Gradio's queue has changed shape: the gate counts only the joins it is admitting.")
            return []
        out = []
        for event in events:
            request = getattr(event, "request", None)
            headers = getattr(request, "headers", {}) or {}
            peer = getattr(getattr(request, "client", None), "host", None)
            address = client_address(headers, peer, self.policy.trust_forwarded)
            fn = getattr(event, "fn", None)
            out.append((address, getattr(event, "session_hash", None), getattr(fn, "concurrency_id", None)))
        return out

    def _fn(self, path: str, body: bytes) -> Any:
        """The event a join asks for: by `fn_index` in the body, or by the api name in a /call/ path."""
        fns = getattr(self.blocks, "fns", {})
        if path.endswith("/queue/join"):
            index = _json(body).get("fn_index")
            return fns.get(index) if isinstance(index, int) else None
        name = path.rstrip("/").rsplit("/", 1)[-1]
        return next((f for f in fns.values() if f.api_name == name), None)

    def _address(self, scope: dict) -> str:
        peer = (scope.get("client") or (None,))[0]
        return client_address(Headers(scope=scope), peer, self.policy.trust_forwarded)

    @staticmethod
    def _release(counter: Counter, key: str) -> None:
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]


def _content_length(scope: dict) -> int | None:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() else None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request's body, or None once it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the app the body already read, then listens to the client as before."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _session(body: bytes) -> str | None:
    session = _json(body).get("session_hash")
    return session if isinstance(session, str) else None


async def _refuse(scope: dict, receive: Any, send: Any, message: str, status: int) -> None:
    await JSONResponse({"detail": message, "error": message}, status_code=status)(scope, receive, send)
