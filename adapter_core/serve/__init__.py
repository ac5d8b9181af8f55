"""Serving adapters: the resident models (`pool`), cross-request batching (`batcher`), the dispatcher that
ties them to a library and a router (`dispatcher`), the OpenAI-compatible HTTP API (`api`) and the
stand-alone server around it (`app`). Serving reads saved adapters only: it never imports the engine.

    from adapter_core.serve import build_server
    app = build_server("adapters", router="router")   # run it with uvicorn

This face is what the layers above (the CLI, the studio) use; the modules behind it are internal.
"""

from .answer import Stream
from .api import create_app, static_key
from .app import build_server
from .dispatcher import FALLBACK, Dispatcher, Limits
from .errors import Unauthorized
from .pool import ModelPool, model_bytes

__all__ = [
    "FALLBACK",
    "Dispatcher",
    "Limits",
    "ModelPool",
    "Stream",
    "Unauthorized",
    "build_server",
    "create_app",
    "model_bytes",
    "static_key",
]
