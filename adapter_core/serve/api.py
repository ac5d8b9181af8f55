"""The OpenAI-compatible HTTP API over a `Dispatcher`: `/models`, `/chat/completions` (plain and streamed)
and `/classify`, with OpenAI's error JSON. `create_app` builds it; `python -m adapter_core serve` and
the studio both mount it under `/v1`.

Every request first meets `authorize` (`bounds.KeysFirst`, from the headers alone: nothing of a keyless
request's body is read), which maps its bearer key to the caller's owner id (or refuses it), then the
body cap (`bounds.BodyLimit`), so a server with owners serves each caller only their own
adapters. Each answer in progress holds one of its caller's places (the owner, or on a server without
owners the client's address) until its row ends; a client that hangs up, streaming or not, stops its row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable
from functools import partial
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import AdapterError
from ..routing import judged, out_of_scope_rule, score_for_json, threshold_at
from .answer import Answer
from .bounds import BodyLimit, KeysFirst, hung_up
from .dispatcher import Dispatcher
from .errors import NotFound, ServeError, Unauthorized
from .schemas import ChatRequest, ClassifyRequest

log = logging.getLogger("adapter_core.serve")
Authorize = Callable[[str | None], str | None]


def static_key(key: str | None) -> Authorize:
    """One shared key for every caller (None: no key needed); every caller is the same owner, None."""

    def authorize(token: str | None) -> str | None:
        if key and not (token and secrets.compare_digest(token.encode("utf-8", "replace"), key.encode())):
            raise Unauthorized("Send the API key as 'Authorization: Bearer KEY'." if not token else "Wrong API key.")
        return None

    return authorize


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None, param=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def create_app(dispatcher: Dispatcher, authorize: Authorize | None = None) -> FastAPI:
    authorize = authorize or static_key(None)
    app = FastAPI(title="Adapter Studio API", docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.add_middleware(BodyLimit, max_bytes=dispatcher.limits.max_body_bytes, error_body=error_body)
    app.add_middleware(KeysFirst, authorize=authorize, refusal=_error_of)  # added last: runs first
    _errors(app)

    def caller(request: Request) -> str | None:
        return request.state.owner  # KeysFirst checked the key before the body was read

    @app.get("/models")
    async def models(owner: str | None = Depends(caller)) -> dict:
        listed = await run_in_threadpool(dispatcher.models, owner)
        return {
            "object": "list",
            "data": [{"object": "model", "owned_by": "adapter-studio", **m} for m in listed],
        }

    @app.post("/classify")
    async def classify(body: ClassifyRequest, owner: str | None = Depends(caller)) -> dict:
        predictions, entry = await run_in_threadpool(dispatcher.classify, body.model, body.texts(), owner)
        rule = out_of_scope_rule(entry.meta)
        override = None if body.false_rejection is None else threshold_at(entry.meta, body.false_rejection)
        threshold = None
        data = []
        for i, p in enumerate(predictions):
            in_scope, threshold = judged(p, override)
            data.append(
                {
                    "object": "classification",
                    "index": i,
                    "label": p.label,
                    "confidence": p.confidence,
                    "probabilities": p.probabilities,
                    "in_scope": in_scope,
                    "ood_score": score_for_json(p.ood_score),
                }
            )
        return {
            "object": "list",
            "model": entry.name,
            "score": rule["score"] if rule else None,
            "threshold": score_for_json(threshold),
            "false_rejection": body.false_rejection if override is not None else (rule or {}).get("false_rejection"),
            "data": data,
        }

    @app.post("/chat/completions")
    async def chat(body: ChatRequest, request: Request, owner: str | None = Depends(caller)):
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        put = lambda item: loop.call_soon_threadsafe(pieces.put_nowait, item)  # noqa: E731
        answer = await run_in_threadpool(
            partial(
                dispatcher.start_chat,
                body.model,
                [m.as_dict() for m in body.messages],
                lambda text: put(("text", text)),
                lambda error: put(("end", error)),
                caller=places_of(owner, request),
                owner=owner,
                max_tokens=body.max_completion_tokens or body.max_tokens,
                temperature=body.temperature or 0.0,
                top_p=body.top_p if body.top_p is not None else 1.0,
                stop=body.stops(),
                router=body.router,
                false_rejection=body.route_false_rejection,
            )
        )
        reply = Reply(answer, pieces, partial(dispatcher.cancel, answer))
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(reply.events(usage), media_type="text/event-stream", headers=reply.headers())
        return JSONResponse(await reply.whole(request), headers=reply.headers())

    return app


def places_of(owner: str | None, request: Request) -> Hashable:
    """Whose places a request takes: its owner's, or on a server without owners, its client address's."""
    if owner is not None:
        return owner
    return ("address", request.client.host if request.client else None)


class Reply:
    """One chat answer as it arrives from the batcher, sent whole or as Server-Sent Events."""

    def __init__(self, answer: Answer, pieces: asyncio.Queue, cancel: Callable[[], None]):
        self.answer, self.pieces, self.cancel = answer, pieces, cancel
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def headers(self) -> dict[str, str]:
        route = self.answer.route
        if route is None:
            return {}
        return {
            "X-Adapter-Router": quote(self.answer.router or ""),
            "X-Route-Label": quote(route.label),
            "X-Route-Confidence": f"{route.confidence:.4f}",
            "X-Route-Fallback": "true" if route.fallback else "false",
        }

    def _base(self, kind: str) -> dict:
        out = {"id": self.id, "object": kind, "created": self.created, "model": self.answer.model}
        if self.answer.route is not None:
            out["route"] = {"router": self.answer.router, **self.answer.route.to_dict()}
        return out

    def usage(self) -> dict:
        row = self.answer.row
        completion = len(row.tokens) if row else 0
        prompt = self.answer.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def finish_reason(self) -> str:
        row = self.answer.row
        return "length" if row is not None and row.finish_reason == "length" else "stop"

    async def whole(self, request: Request) -> dict:
        async def watch() -> None:
            await hung_up(request)
            self.pieces.put_nowait(("gone", None))

        watcher = asyncio.ensure_future(watch())
        text = []
        try:
            while True:
                kind, value = await self.pieces.get()
                if kind == "gone":  # nobody waits for this answer any more
                    return {}
                if kind == "end":
                    _raise(value)
                    break
                text.append(value)
        finally:
            watcher.cancel()
            self.cancel()
        message = {"role": "assistant", "content": "".join(text)}
        choice = {"index": 0, "message": message, "finish_reason": self.finish_reason(), "logprobs": None}
        return {**self._base("chat.completion"), "choices": [choice], "usage": self.usage()}

    async def events(self, include_usage: bool) -> AsyncIterator[str]:
        def chunk(delta: dict, finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return _sse({**self._base("chat.completion.chunk"), "choices": [choice]})

        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, value = await self.pieces.get()
                if kind == "end":
                    break
                yield chunk({"content": value})
            if value is not None:  # the batch failed after the stream began: say so in OpenAI's shape
                yield _sse(_error_of(value)[1])
                return
            yield chunk({}, self.finish_reason())
            if include_usage:
                yield _sse({**self._base("chat.completion.chunk"), "choices": [], "usage": self.usage()})
            yield "data: [DONE]\n\n"
        finally:  # the client went away (Starlette cancels this stream at once), or the answer is complete
            self.cancel()


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _raise(error: BaseException | None) -> None:
    if error is not None:
        raise error


def _error_of(e: BaseException) -> tuple[int, dict]:
    if isinstance(e, NotFound):
        return e.status, error_body(f"{e} GET /v1/models lists the models you can use.", e.kind, e.code)
    if isinstance(e, ServeError):
        return e.status, error_body(str(e), e.kind, e.code)
    if isinstance(e, AdapterError):
        return 400, error_body(str(e))
    log.error("Unexpected error while serving", exc_info=e)
    return 500, error_body("Something went wrong on the server; it has been logged.", "server_error")


def _errors(app: FastAPI) -> None:
    """Every error leaves in OpenAI's JSON shape, with no server internals in it."""

    @app.exception_handler(AdapterError)
    async def refused(request: Request, e: AdapterError) -> JSONResponse:
        status, body = _error_of(e)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        status, body = _error_of(e)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        if first.get("type") == "json_invalid":
            where = first.get("loc", ("body", 0))[-1]
            message = (
                f"The request body is not valid JSON (it breaks at character {where}). Send one JSON object, "
                'such as {"model": "...", "messages": [{"role": "user", "content": "..."}]}.'
            )
            return JSONResponse(error_body(message), status_code=400)
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        what = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message = f"{where}: {what}" if where else f"The request body is not valid JSON of the right shape: {what}."
        return JSONResponse(error_body(message, param=where), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        message = "No such route. The API has GET /v1/models, POST /v1/chat/completions and POST /v1/classify."
        text = message if e.status_code == 404 else str(e.detail)
        body = error_body(text, code=str(e.status_code))
        return JSONResponse(body, status_code=e.status_code, headers=getattr(e, "headers", None))
