"""Request bodies of the HTTP API, in OpenAI's shapes, checked by pydantic before anything runs.

Fields OpenAI clients may send that this server does not use (tools, logprobs, response_format, ...)
are ignored, as other OpenAI-compatible servers do. Extra fields of ours: `router` and
`route_false_rejection` for `model="auto"`, and `false_rejection` for `/v1/classify`: the share of
in-scope messages the router's out-of-scope threshold may reject (its calibrated rate when not given).
The older raw-threshold fields (`route_threshold`, `threshold`) are refused with a message saying so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..out_of_scope import MAX_FALSE_REJECTION

MAX_STOPS = 4


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def as_dict(self) -> dict[str, str]:
        """The message as the chat template wants it; `developer` is OpenAI's newer name for `system`."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # Greedy unless asked: the same answer every time is what a support hub wants by default.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="one answer per request")
    router: str | None = Field(None, max_length=256)
    route_false_rejection: float | None = Field(None, ge=0, le=MAX_FALSE_REJECTION)
    route_threshold: float | None = None  # refused: see `_no_raw_threshold`

    @field_validator("route_threshold")
    @classmethod
    def _no_route_threshold(cls, value: float | None) -> None:
        return _no_raw_threshold(value, "route_false_rejection")

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's")
        return messages

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOPS or any(not s or len(s) > 100 for s in stops):
            raise ValueError(f"give at most {MAX_STOPS} stop strings of 1 to 100 characters")
        return stop

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(min_length=1)
    false_rejection: float | None = Field(None, ge=0, le=MAX_FALSE_REJECTION)
    threshold: float | None = None  # refused: see `_no_raw_threshold`

    @field_validator("threshold")
    @classmethod
    def _no_threshold(cls, value: float | None) -> None:
        return _no_raw_threshold(value, "false_rejection")

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _no_raw_threshold(value: float | None, instead: str) -> None:
    """A raw confidence threshold meant something else before routers had out-of-scope scores."""
    if value is not None:
        raise ValueError(
            f"a raw threshold is no longer accepted; send {instead}: the share of in-scope messages the "
            f"router may send to the fallback (0 to {MAX_FALSE_REJECTION:g}, e.g. 0.05)"
        )
