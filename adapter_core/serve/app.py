"""The stand-alone server of `python -m adapter_core serve`: a library folder behind the API at /v1."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ..errors import AdapterError
from ..library import Library
from ..pull import HUB_PREFIX, pulled_library
from .api import create_app, static_key
from .dispatcher import Dispatcher, Limits
from .pool import ModelPool


def build_server(
    library: str | Path,
    router: str | None = None,
    fallback: str | None = None,
    api_key: str | None = None,
    max_batch: int = 32,
    window_s: float = 0.01,
) -> FastAPI:
    """The app to run with uvicorn. Checks the library and the router now, so a typo fails at start.
    `library`: a folder of adapter folders, or `hf://owner/repo`, a pack pulled from the Hub (checked, and
    kept in the Hugging Face cache: it serves offline once pulled)."""
    folder = pulled_library(library) if str(library).startswith(HUB_PREFIX) else Path(library)
    if not folder.is_dir():
        raise AdapterError(f"The library {folder.name!r} is not a folder. Point --library at a folder of adapters.")
    if max_batch < 1 or window_s < 0:
        raise AdapterError("--max-batch must be 1 or more and --batch-window-ms 0 or more.")
    dispatcher = Dispatcher(
        Library(folder), ModelPool(), Limits(max_batch=max_batch, window_s=window_s), router, fallback
    )
    if router:
        entry = dispatcher.entry(router, None)
        if entry.task != "classification":
            raise AdapterError(f"The router {router!r} is an instruction adapter; --router needs a classification one.")
    root = FastAPI(title="Adapter Studio server", docs_url=None, redoc_url=None, openapi_url=None)
    root.state.dispatcher = dispatcher
    root.mount("/v1", create_app(dispatcher, static_key(api_key)))

    @root.get("/health")
    async def health() -> dict:
        return {"status": "ok", "adapters": len(dispatcher.library.names())}

    return root
