"""The stand-alone server of `python -m adapter_core serve`: a library folder behind the API at /v1.

It is bounded as a public studio is (`Limits`' defaults): each caller (client address) has a few answers
in progress at a time, prompts and answers are capped, and bodies are cut at 1 MB. It loads only the
catalog's base models unless told otherwise: an adapter's files name its base, and a pack pulled from
the Hub could name any model at all.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI

from ..catalog import CATALOG
from ..errors import AdapterError
from ..library import Library
from ..pull import HUB_PREFIX, pulled_library
from .api import create_app, static_key
from .dispatcher import Dispatcher, Limits
from .pool import ModelPool

log = logging.getLogger("adapter_core.serve")
CATALOG_BASES = frozenset(CATALOG) | {entry.hub_id for entry in CATALOG.values()}


def build_server(
    library: str | Path,
    router: str | None = None,
    fallback: str | None = None,
    api_key: str | None = None,
    max_batch: int = 32,
    window_s: float = 0.01,
    *,
    allow_any_base: bool = False,
    limits: Limits | None = None,
) -> FastAPI:
    """The app to run with uvicorn. Checks the library and the router now, so a typo fails at start.
    `library`: a folder of adapter folders, or `hf://owner/repo`, a pack pulled from the Hub (checked, and
    kept in the Hugging Face cache: it serves offline once pulled). `allow_any_base`: load the base
    model any adapter names, not only the catalog's. `limits`: what one caller may ask (default: a
    public studio's)."""
    folder = pulled_library(library) if str(library).startswith(HUB_PREFIX) else Path(library)
    if not folder.is_dir():
        raise AdapterError(f"The library {folder.name!r} is not a folder. Point --library at a folder of adapters.")
    if max_batch < 1 or window_s < 0:
        raise AdapterError("--max-batch must be 1 or more and --batch-window-ms 0 or more.")
    lib = Library(folder)
    if not allow_any_base:
        outside = sorted({e.base or "(unnamed)" for e in lib.entries(None)} - CATALOG_BASES)
        if outside:
            raise AdapterError(
                f"The library's adapters run on base models outside the catalog ({', '.join(outside)}); serving "
                "them would download and run whatever model their files name. Pass --allow-any-base if you "
                "trust them."
            )
    limits = replace(limits or Limits(), max_batch=max_batch, window_s=window_s)
    pool = ModelPool(allow=(lambda name: name) if allow_any_base else catalog_base)
    dispatcher = Dispatcher(lib, pool, limits, router, fallback)
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


def catalog_base(name: str) -> str:
    """`name`, if it is a catalog base model (an adapter added to the library later meets this too)."""
    if name not in CATALOG_BASES:
        raise AdapterError(
            f"This server loads only the catalog's base models ({', '.join(CATALOG)}); an adapter names "
            f"{name!r}. Its operator can start it with --allow-any-base."
        )
    return name


def open_warning(host: str, api_key: str | None) -> str | None:
    """What to shout when the server listens beyond this machine with no key; None when it does not."""
    if api_key:
        return None
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (
        f"WARNING: serving on {host} with no API key: anyone who can reach this address can use every "
        "adapter in the library and this machine's compute. Pass --api-key (or set ADAPTER_STUDIO_API_KEY), "
        "or listen on 127.0.0.1."
    )
