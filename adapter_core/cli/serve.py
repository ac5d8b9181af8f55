"""`python -m adapter_core serve | runs`: a library over an OpenAI-compatible HTTP API, and the past runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import AdapterError
from .errors import OK

log = logging.getLogger("adapter_core.serve")


def add_parsers(sub) -> None:
    sub.add_parser("runs", help="list past runs in $ADAPTER_STUDIO_HOME/runs").set_defaults(command_fn=cmd_runs)
    s = sub.add_parser(
        "serve",
        help="serve a library of adapters over an OpenAI-compatible HTTP API",
        description="Serve every adapter in a library folder over an OpenAI-compatible API at /v1: "
        "chat with instruction adapters (or model=auto through a router), classify with classification "
        "adapters. Requests that arrive together share one mixed-adapter batch.",
    )
    s.add_argument(
        "--library",
        required=True,
        help="a folder of adapter folders (the studio's: ~/.adapter_studio/adapters), or hf://owner/repo: a pack "
        "pulled from the Hub (python -m adapter_core pack)",
    )
    s.add_argument("--router", help="a classification adapter whose labels name the department adapters (model=auto)")
    s.add_argument(
        "--fallback",
        help="where model=auto sends messages the router is unsure of: a model name, or a fixed hand-off message "
        "(default: the departments' bare base model)",
    )
    s.add_argument(
        "--api-key",
        default=os.environ.get("ADAPTER_STUDIO_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $ADAPTER_STUDIO_API_KEY; none: open)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-batch", type=int, default=32, help="most requests in one decoding batch (1: one at a time)")
    s.add_argument(
        "--batch-window-ms", type=float, default=10.0, help="how long a request waits for others to batch with"
    )
    # The defaults are a public studio's (serve's Limits; not imported here, so that the CLI starts fast).
    s.add_argument(
        "--max-in-flight", type=int, help="answers in progress at a time per client address; more get 429 (default: 8)"
    )
    s.add_argument("--max-prompt-chars", type=int, help="longest conversation or input, in characters (default: 4000)")
    s.add_argument(
        "--max-new-tokens", type=int, help="most tokens in one answer, whatever max_tokens asks (default: 512)"
    )
    s.add_argument(
        "--allow-any-base",
        action="store_true",
        help="load whatever base model an adapter names (default: only the catalog's; a pack from the Hub "
        "could name any model)",
    )
    s.set_defaults(command_fn=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..serve import Limits
    from ..serve.app import build_server, open_warning

    limits = Limits()
    asked = {
        "max_in_flight_per_owner": args.max_in_flight,
        "max_prompt_chars": args.max_prompt_chars,
        "max_new_tokens": args.max_new_tokens,
    }
    for field, value in asked.items():
        if value is not None:
            if value < 1:
                raise AdapterError("--max-in-flight, --max-prompt-chars and --max-new-tokens must be 1 or more.")
            setattr(limits, field, value)
    app = build_server(
        args.library,
        args.router,
        args.fallback,
        args.api_key,
        args.max_batch,
        args.batch_window_ms / 1000,
        allow_any_base=args.allow_any_base,
        limits=limits,
    )
    warning = open_warning(args.host, args.api_key)
    if warning:
        print(f"\n{warning}\n", file=sys.stderr)
        log.warning(warning)
    print(f"Serving {args.library} at http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return OK


def cmd_runs(args: argparse.Namespace) -> int:
    from ..engine.runs import RunStore

    store = RunStore()
    runs, unreadable = store.list(), store.unreadable()
    if not runs and not unreadable:
        print(f"No runs yet in {store.root}.")
        return OK
    for run in runs:
        status, config = run.status(), run.config()
        metrics = status.get("metrics")
        metrics = metrics if isinstance(metrics, dict) else {}
        best = ", ".join(
            f"{k} {v:.3f}"
            for k, v in metrics.items()
            if k in ("accuracy", "macro_f1", "perplexity") and isinstance(v, (int, float))
        )
        task, base = str(config.get("task") or ""), str(config.get("base") or "")
        print(f"{run.id:<40} {status['status']:<11} {task:<14} {base:<22} {best}")
    if unreadable:
        names = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise AdapterError(
            f"{len(unreadable)} run folder(s) in {store.root} cannot be read (a damaged config.json or "
            f"status.json): {names}. Delete or repair them."
        )
    return OK
