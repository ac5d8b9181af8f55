"""Bounds that hold before any work: request bodies are capped as they arrive, and a client that
hangs up is noticed at once.

`BodyLimit` is plain ASGI (no BaseHTTPMiddleware, which would buffer): a declared Content-Length over
the cap is refused (413) before a byte of the body is read, and a chunked body is counted as it streams
and cut at the cap. It sits outside the routes, so it runs before the key check and before FastAPI
parses anything: a stranger's 100 MB body costs the server at most the cap.
"""

from __future__ import annotations

import asyncio

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
