"""The errors a serving caller can cause, each with the HTTP status the API answers with."""

from __future__ import annotations

from ..errors import AdapterError


class ServeError(AdapterError):
    status = 400
    kind = "invalid_request_error"
    code: str | None = None


class NotFound(ServeError):
    status = 404
    code = "model_not_found"


class WrongTask(ServeError):
    code = "wrong_task"


class Busy(ServeError):
    status = 429
    kind = "rate_limit_exceeded"
    code = "queue_full"


class Unauthorized(ServeError):
    status = 401
    kind = "authentication_error"
    code = "invalid_api_key"
