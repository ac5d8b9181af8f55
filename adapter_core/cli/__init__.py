"""`python -m adapter_core`: train, sweep, evaluate, predict, chat, list runs, serve and share, from the shell.

One module per command group (train, sweep, evaluate, serve, share); each adds its subcommands to the
parser and names the function that runs them. `main(argv)` runs one command in-process and returns its
exit code, under one error policy (errors.py).
"""

from __future__ import annotations

import argparse

from . import evaluate, serve, share, sweep, train
from .errors import run_command, setup_logging
from .train import train_config

EXAMPLES = """examples:
  python -m adapter_core train --base minilm --data sample_data/support_routing.csv --out runs/routing
  python -m adapter_core evaluate --adapter runs/routing --data test.csv
  python -m adapter_core predict --adapter runs/routing --text "Where is my parcel?"
  python -m adapter_core train --base smollm2-135m-instruct --task instruction \\
      --data sample_data/orders_sft.csv --out runs/orders
  python -m adapter_core chat --adapter runs/orders --prompt "My order has not arrived."
  python -m adapter_core runs

Several GPUs: torchrun --nproc_per_node 4 -m adapter_core train ... (or accelerate launch -m adapter_core ...)
"""
COMMAND_GROUPS = (train.add_parser, sweep.add_parser, evaluate.add_parsers, serve.add_parsers, share.add_parsers)

__all__ = ["build_parser", "main", "train_config"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m adapter_core",
        description="Adapter Studio: train small bottleneck adapters on a frozen transformer, and use them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMAND_GROUPS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code. Every failure is one line `error: ...` on stderr and a
    non-zero code, never a traceback (set ADAPTER_STUDIO_DEBUG=1 to log an unexpected failure's
    traceback as well); bad arguments get argparse's usage line and code 2."""
    debug = setup_logging()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2), already printed by argparse
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    return run_command(args.command_fn, args, debug)
