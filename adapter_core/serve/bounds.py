"""Bounds that hold before any work: request bodies are capped as they arrive, and a client that
hangs up is noticed at once.

`KeysFirst` checks the bearer key from the headers alone, before anything reads the body: a caller
without a valid key is refused (401) whatever it sends, malformed JSON included, and the owner it
stands for rides in the request's state for the routes.

`BodyLimit` is plain ASGI (no BaseHTTPMiddleware, which would buffer): a declared Content-Length over
the cap is refused (413) before a byte of the body is read, and a chunked body is counted as it streams
and cut at the cap. Both sit outside the routes, before FastAPI parses anything: a stranger's 100 MB
body costs the server at most the cap, and nothing at all without a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}  # the rest of a refused body is never read: end the connection


def too_large(limit: int) -> str:
    return f"The request body is over this server's limit of {limit:,} bytes. Send a smaller request."


class BodyTooLarge(HTTPException):
    """Raised while the body is read; FastAPI lets an HTTPException through, and the API's error
    handler answers it in OpenAI's shape."""

    def __init__(self, limit: int):
        super().__init__(413, too_large(limit), headers=CLOSE)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, error_body=None):
        self.app, self.max_bytes, self.error_body = app, max_bytes, error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            body = self.error_body(too_large(self.max_bytes), code="413") if self.error_body else {}
            await JSONResponse(body, status_code=413, headers=CLOSE)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


OPEN_PATHS = ("/docs", "/openapi.json")  # the API's own description: no adapter, no caller


class KeysFirst:
    """Maps the bearer key to the caller's owner before the body is read; `authorize` raises to refuse,
    and `refusal` turns that into the (status, JSON body) the client gets."""

    def __init__(self, app: ASGIApp, authorize: Callable, refusal: Callable[[BaseException], tuple[int, dict]]):
        self.app, self.authorize, self.refusal = app, authorize, refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").endswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        try:
            owner = await run_in_threadpool(self.authorize, bearer(scope))
        except Exception as e:  # noqa: BLE001 - every refusal leaves as an error body, never a traceback
            status, body = self.refusal(e)
            await JSONResponse(body, status_code=status, headers=CLOSE)(scope, receive, send)
            return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


def bearer(scope: Scope) -> str | None:
    """The token of an 'Authorization: Bearer TOKEN' header, as text (undecodable bytes replaced, so
    the key check refuses them rather than failing)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value.decode("latin-1")
            return header[7:].strip() if header[:7].lower() == "bearer " else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # a malformed one is the HTTP server's to refuse
    return None


async def hung_up(request: Request) -> None:
    """Return when the client has gone away. Only for a request whose body has been read: after it, the
    server's next message is the disconnect (ASGI); nothing else reads from it meanwhile."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)  # a server that answers with more (empty) body must not spin us
