"""`python -m adapter_core sweep`: a grid of runs over the settings a sweep may vary (bottleneck x learning
rate, optionally x placement), one after another on one loaded base, by the engine's sweep executor in
this process; the best adapter copied to OUT/best."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..errors import AdapterError
from ..settings import Setting
from . import args as cli_args
from .errors import OK, folder_error
from .progress import ctrl_c_stops, sweep_line


def grid_settings() -> list[Setting]:
    """The settings a sweep's grid varies, each given as a comma-separated list (--bottlenecks, --lrs, ...)."""
    return [s for s in cli_args.training_settings().values() if s.sweep == "vary"]


def shared_settings() -> list[Setting]:
    """The settings every run of the grid has alike."""
    return [s for s in cli_args.training_settings().values() if s.sweep == "shared"]


def add_parser(sub) -> None:
    w = sub.add_parser(
        "sweep",
        help="train a grid of adapters (bottleneck x learning rate) on one loaded base; keep the best",
        description="Train one adapter per bottleneck x learning rate (x placement), one after another on one "
        "loaded base, each stopping early when the validation metric stops improving. Prints the runs ranked "
        "by the validation metric, writes OUT/sweep.json, and copies the best adapter to OUT/best.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for s in grid_settings():  # an axis whose setting has no default of its own must be given
        fixed = s.default is not None
        choices = f" ({', '.join(s.choices)})" if s.choices else ""
        w.add_argument(
            f"{s.cli_flag}s",
            dest=f"{s.name}s",
            required=not fixed,
            help=f"values of {s.cli_flag} to try, comma-separated{choices}"
            + (f"; none: {s.default}" if fixed else "")
            + "%(default).0s",
        )
    w.add_argument("--patience", type=int, default=2, help="evaluations without improvement before a run stops")
    cli_args.add_settings(w, shared_settings(), required=("data",), defaults={"data": None, "name": None})
    w.add_argument("--out", required=True, help="folder for the runs (OUT/<run>) and the best adapter (OUT/best)")
    w.set_defaults(command_fn=cmd_sweep)


def sweep_configs(args: argparse.Namespace) -> list:
    """The grid's runs: the engine's `sweep_configs` over the shared settings given."""
    from ..engine.config import TrainConfig
    from ..engine.sweep import sweep_configs

    values = cli_args.settings_given(args, shared_settings())
    values["name"] = args.name or Path(args.out).name or "sweep"
    grid = {}
    for s in grid_settings():
        given = getattr(args, f"{s.name}s")
        grid[s.name] = cli_args.value_list(f"{s.cli_flag}s", given, s) if given else None
    return sweep_configs(
        TrainConfig.from_settings(values), grid["bottleneck"], grid["lr"], grid["placement"], args.patience
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..atomic import write_json_atomic
    from ..engine.sweep import format_table, run_sweep

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"--out {args.out} is a file; give a folder for the sweep (it is created if needed).")
    configs = sweep_configs(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise folder_error("sweep", args.out, e) from None
    started: set[str] = set()

    def on_event(event) -> None:  # from the trainer's thread, as each run goes
        name = event.info["sweep_run"]
        if name not in started:
            started.add(name)
            print(f"run {event.info['sweep_index'] + 1}/{event.info['sweep_total']}: {name}", flush=True)
        line = sweep_line(event)
        if line:
            print(line, flush=True)

    def copy_best(sweep, best) -> str:  # the executor's publish step, once the last run has ended
        shutil.rmtree(out / "best", ignore_errors=True)
        shutil.copytree(best.adapter_dir, out / "best")
        return str(out / "best")

    # A first Ctrl-C ends the run under way (its adapter is saved) and the sweep; a second aborts.
    with ctrl_c_stops("Stopping after this step; the run so far is kept. Press Ctrl-C again to abort.") as stop:
        name = args.name or out.name or "sweep"
        result = run_sweep(configs, out, on_event, stop.is_set, name=name, publish=copy_best)
    print("\n" + format_table(result))
    best = result.best
    summary = {"status": result.status, "metric": result.metric, "rows": result.rows, "best": best}
    if best:
        score = best["metrics"][result.metric]
        print(f"\nbest: {best['name']} ({result.metric} {score:.4f}); adapter in {out / 'best'}")
    write_json_atomic(out / "sweep.json", summary)
    if result.status == "stopped":
        print("The sweep was stopped before its last run.")
    return OK
