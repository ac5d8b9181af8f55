"""Serving adapters: the resident models (`pool`), cross-request batching (`batcher`), routing with a
fallback (`routing`), the hub that ties them to a library (`hub`), and the OpenAI-compatible HTTP API
(`api`, the only module here that imports FastAPI)."""
