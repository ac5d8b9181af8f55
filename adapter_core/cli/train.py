"""`python -m adapter_core train`: one run from a data file, every setting a flag, Ctrl-C to stop it."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..errors import AdapterError
from . import args as cli_args
from .errors import OK, folder_error, one_line
from .progress import TrainProgress, ctrl_c_stops, metrics_line


def add_parser(sub) -> None:
    t = sub.add_parser(
        "train",
        help="train an adapter from a CSV, TSV or JSONL file, or a Hub dataset",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cli_args.add_settings(t, cli_args.training_settings().values(), defaults={"data": None, "name": None})
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped or interrupted run in --out from its checkpoint, with the settings it "
        "started with (the other options are ignored)",
    )
    t.add_argument("--out", required=True, help="run folder to create; the adapter goes to OUT/adapter")
    t.set_defaults(command_fn=cmd_train)


def train_config(args: argparse.Namespace):
    """The TrainConfig that `train`'s options describe; the preset gives the bottleneck when neither it
    nor a reduction factor is given, and the --out folder the name when none is."""
    from ..engine.config import TrainConfig
    from ..engine.plan import PRESETS

    if not args.data:
        raise AdapterError(
            "train needs --data, the training file or hf://datasets/OWNER/NAME (or --resume to continue the run "
            "in --out)."
        )
    values = cli_args.settings_given(args, cli_args.training_settings().values())
    values["name"] = args.name or Path(args.out).name or "adapter"
    if values["bottleneck"] is None and values["reduction_factor"] is None:
        values["bottleneck"] = PRESETS[args.preset].bottleneck
    return TrainConfig.from_settings(values)


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from ..atomic import write_json_atomic
    from ..engine.answer_scores import scores_text
    from ..engine.runs import Run, RunRecorder
    from ..engine.train import multi_cpu, train

    out = Path(args.out)
    run = Run(out)
    if args.resume and not (out / "config.json").is_file():
        raise AdapterError(f"--resume continues a run made by train: {args.out} holds no run (no config.json).")
    config = run.train_config() if args.resume else train_config(args)
    config.check()  # bad settings fail before anything is written
    main_process = PartialState(cpu=multi_cpu()).is_main_process  # under torchrun, rank 0 alone writes the run folder
    if main_process:
        if out.exists() and not out.is_dir():
            raise AdapterError(f"--out {args.out} is a file; give a folder for the run (it is created if needed).")
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not args.resume:
                write_json_atomic(out / "config.json", config.to_dict())
            run.set_status("loading")
        except OSError as e:
            raise folder_error("run", args.out, e) from None
    record, progress = RunRecorder(run), TrainProgress()

    def on_event(event) -> None:
        record(event)
        progress(event)

    try:
        with ctrl_c_stops(
            "Stopping after this step; the adapter will be saved. Press Ctrl-C again to abort.", progress.write
        ) as stop:
            result = train(config, out, on_event, stop.is_set, resume=args.resume)
    except BaseException as e:
        if main_process:
            # The run folder may be gone or the disk full: then the error below says what failed.
            with contextlib.suppress(OSError):
                run.set_status("failed", message=one_line(str(e)) or type(e).__name__)
        raise
    finally:
        progress.close()
    if not main_process:
        return OK
    print(
        f"{result.status}{' (stopped early)' if result.stopped_early else ''}: {result.steps} steps in "
        f"{result.train_seconds:.0f}s ({result.examples_per_sec:.1f} examples/s); adapter in {result.adapter_dir}"
    )
    print(metrics_line(result.metrics))
    if result.answer_scores:
        print(scores_text(result.answer_scores))
    if result.status == "stopped":
        print(f"Resume it with: python -m adapter_core train --resume --out {args.out}")
    return OK
