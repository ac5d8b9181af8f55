"""`python -m adapter_core`: train, evaluate, predict, chat and list runs from the shell."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from .config import parse_layers
from .errors import AdapterError
from .share import commands as share_commands

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


def _auto(kind: type):
    """An argparse type that reads "auto" as None (train chooses the value) and anything else as `kind`."""

    def parse(text: str):
        return None if text == "auto" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _layer_list(text: str) -> list[int]:
    """--leave-out "0,1": layer indices counted from 0 ("" leaves none out)."""
    try:
        return parse_layers(text)
    except AdapterError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _json_object(text: str) -> dict:
    """--target-modules '{"layers": ..., "attn": ..., "ffn": ...}': a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            'give a JSON object such as {"layers": "model.layers", "attn": "self_attn.o_proj", "ffn": "mlp.down_proj"}'
        )
    return value


def _preset_name(text: str) -> str:
    """A preset's name as PRESETS spells it, from any case and with - or _ for spaces (quick-look)."""
    from .engine.plan import PRESETS

    wanted = text.replace("-", " ").replace("_", " ").strip().lower()
    return next((name for name in PRESETS if name.lower() == wanted), text)


def build_parser() -> argparse.ArgumentParser:
    from .config import ACTIVATIONS, INITS, PLACEMENTS
    from .engine.plan import PRESETS
    from .engine.tracking import REPORT_TO
    from .engine.train import TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m adapter_core",
        description="Adapter Studio: train small bottleneck adapters on a frozen transformer, and use them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train an adapter from a CSV, TSV or JSONL file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument("--base", default=d.base, help="catalog name (minilm, smollm2-135m-instruct), hub id or local path")
    t.add_argument("--data", help="training file: .csv, .tsv or .jsonl with a header (not with --resume)")
    t.add_argument(
        "--task",
        default=d.task,
        choices=["classification", "instruction"],
        help="classification: (text, label) columns; instruction: (instruction, response)",
    )
    for col in ("text", "label", "instruction", "response", "input", "system"):
        t.add_argument(f"--{col}-column", help=f"column holding the {col} (default: detected by name)")
    t.add_argument("--val-data", help="separate validation file (default: hold out --val-fraction of --data)")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction)
    t.add_argument("--name", help="adapter name (default: the --out folder name)")
    t.add_argument(
        "--preset",
        default=d.preset,
        type=_preset_name,
        choices=list(PRESETS),
        help="recipe for the auto settings: "
        + "; ".join(f"{p.name}: r={p.bottleneck}, at least {p.min_steps} steps" for p in PRESETS.values()),
    )
    t.add_argument(
        "--bottleneck",
        type=_auto(int),
        default="auto",
        help="adapter width r; auto: the preset's ("
        + ", ".join(f"{p.bottleneck} {p.name}" for p in PRESETS.values())
        + ") unless --reduction-factor is given",
    )
    t.add_argument("--reduction-factor", type=float, help="adapter width as hidden size / factor (instead of r)")
    t.add_argument("--placement", default=d.adapter.placement, choices=list(PLACEMENTS))
    t.add_argument("--activation", default=d.adapter.activation, choices=list(ACTIVATIONS))
    t.add_argument("--init", default=d.adapter.init, choices=list(INITS), help="how the adapter's weights start")
    t.add_argument("--dropout", type=float, default=d.adapter.dropout, help="the adapter's own dropout")
    t.add_argument("--scaling", type=float, help="the adapter's output scale (default: 1; 4 for parallel)")
    t.add_argument("--leave-out", type=_layer_list, default=[], help="layers without an adapter, e.g. 0,1")
    t.add_argument(
        "--target-modules",
        type=_json_object,
        help='where adapters go in a model outside the placement table (JSON): {"layers": "model.layers", '
        '"attn": "self_attn.o_proj", "ffn": "mlp.down_proj"}',
    )
    t.add_argument(
        "--base-dropout",
        default=d.base_dropout,
        action=argparse.BooleanOptionalAction,
        help="keep the frozen base's dropout active while training (--no-base-dropout: the base runs in "
        "eval mode, a cheaper step)",
    )
    t.add_argument("--pooling", choices=["cls", "mean", "last"], help="classification pooling (default: by family)")
    t.add_argument(
        "--epochs",
        type=_auto(float),
        default="auto",
        help="passes over the data; auto: enough for the preset's optimizer steps on a small file, "
        "4 on a large one (cut to the preset's time budget on a CPU)",
    )
    t.add_argument(
        "--lr",
        type=_auto(float),
        default="auto",
        help="learning rate; auto: 2e-3 for classification, 1e-3 for instruction (x1.5 Quick look, x0.5 Capacity)",
    )
    t.add_argument(
        "--batch-size",
        type=_auto(int),
        default="auto",
        help="per device; auto: 32, or 16 or 8 when a small file needs more steps",
    )
    t.add_argument("--grad-accum", type=int, default=d.grad_accum)
    t.add_argument("--max-length", type=int, default=d.max_length, help="tokens; longer examples are truncated")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="steps between evaluations (0: 2 per epoch, at most about 10 a run)",
    )
    t.add_argument("--max-steps", type=int, default=d.max_steps, help="stop after this many steps (0: no limit)")
    t.add_argument("--max-seconds", type=float, default=d.max_seconds, help="training time budget (0: none)")
    t.add_argument(
        "--mode",
        default=d.mode,
        choices=["adapter", "head", "full"],
        help="what trains: the adapter and head; the head only; or everything (a baseline, not saved)",
    )
    t.add_argument("--precision", default=d.precision, choices=["auto", "no", "bf16", "fp16"])
    t.add_argument("--device", default=d.device, choices=["auto", "cpu"], help="auto: a GPU when there is one")
    t.add_argument(
        "--early-stopping-patience",
        type=int,
        default=d.early_stopping_patience,
        help="stop after this many evaluations without a better validation metric, keeping the best (0: off)",
    )
    t.add_argument("--report-to", default=d.report_to, choices=list(REPORT_TO), help="experiment tracker")
    t.add_argument("--init-from", help="an adapter (or run) folder to continue training, on the new --data")
    t.add_argument(
        "--sample-prompts",
        type=int,
        default=d.sample_prompts,
        help="instruction runs: validation prompts answered at each evaluation, beside the base's answers",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped or interrupted run in --out from its checkpoint, with the settings it "
        "started with (the other options are ignored)",
    )
    t.add_argument("--out", required=True, help="run folder to create; the adapter goes to OUT/adapter")

    e = sub.add_parser(
        "evaluate",
        help="accuracy, macro-F1 and per-class metrics (or loss and perplexity) on a labelled file",
        description="Evaluate an adapter on a labelled file. For classification: accuracy, macro-F1, "
        "precision, recall and F1 per class, and the most confident mistakes (--json adds the confusion "
        "matrix, with an order of the classes that puts the biggest confusions first).",
    )
    e.add_argument("--adapter", required=True, help="adapter folder, or a run folder")
    e.add_argument("--data", required=True)
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--show-mistakes", type=int, default=10, help="how many misclassified rows to print")
    e.add_argument("--json", action="store_true", help="print one JSON object (with the per-class report)")

    w = sub.add_parser(
        "sweep",
        help="train a grid of adapters (bottleneck x learning rate) on one loaded base; keep the best",
        description="Train one adapter per bottleneck x learning rate (x placement), one after another on one "
        "loaded base, each stopping early when the validation metric stops improving. Prints the runs ranked "
        "by the validation metric, writes OUT/sweep.json, and copies the best adapter to OUT/best.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    w.add_argument("--base", default=d.base, help="catalog name (minilm, smollm2-135m-instruct), hub id or local path")
    w.add_argument("--data", required=True, help="training file: .csv, .tsv or .jsonl with a header")
    w.add_argument("--task", default=d.task, choices=["classification", "instruction"])
    w.add_argument("--val-data", help="separate validation file (default: hold out --val-fraction of --data)")
    w.add_argument("--val-fraction", type=float, default=d.val_fraction)
    w.add_argument("--bottlenecks", required=True, help="adapter widths, comma-separated: 16,64,256")
    w.add_argument("--lrs", required=True, help="learning rates, comma-separated: 1e-3,2e-3")
    w.add_argument("--placements", help="placements to try too, comma-separated: houlsby,pfeiffer (default: houlsby)")
    w.add_argument("--patience", type=int, default=2, help="evaluations without improvement before a run stops")
    w.add_argument("--name", help="name prefix of the runs (default: the --out folder name)")
    w.add_argument("--preset", default=d.preset, type=_preset_name, choices=list(PRESETS), help="recipe for auto")
    w.add_argument("--epochs", type=_auto(float), default="auto", help="passes over the data per run (auto: plan)")
    w.add_argument("--batch-size", type=_auto(int), default="auto", help="per device (auto: plan)")
    w.add_argument("--max-length", type=int, default=d.max_length)
    w.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between evaluations (0: auto)")
    w.add_argument("--max-steps", type=int, default=d.max_steps, help="per run (0: no limit)")
    w.add_argument("--max-seconds", type=float, default=d.max_seconds, help="training time budget per run (0: none)")
    w.add_argument("--seed", type=int, default=d.seed)
    w.add_argument("--device", default=d.device, choices=["auto", "cpu"])
    w.add_argument("--out", required=True, help="folder for the runs (OUT/<run>) and the best adapter (OUT/best)")

    pr = sub.add_parser("predict", help="label a text with a classification adapter")
    pr.add_argument("--adapter", required=True)
    pr.add_argument("--text", required=True, action="append", help="repeat for several texts")
    pr.add_argument("--json", action="store_true")

    c = sub.add_parser("chat", help="answer a prompt with an instruction adapter")
    c.add_argument("--adapter", help="adapter or run folder (omit with --base for the bare base model)")
    c.add_argument("--base", help="base model when no adapter is given")
    c.add_argument("--prompt", required=True)
    c.add_argument("--max-new-tokens", type=int, default=160)

    sub.add_parser("runs", help="list past runs in $ADAPTER_STUDIO_HOME/runs")
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
    share_commands.add_parsers(sub)  # push, pull, export, pack
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one line `error: ...` on stderr and a non-zero exit, never a
    traceback (set ADAPTER_STUDIO_DEBUG=1 to get the traceback of an unexpected failure as well)."""
    debug = _setup_logging()
    args = build_parser().parse_args(argv)
    try:
        return {
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "sweep": cmd_sweep,
            "predict": cmd_predict,
            "chat": cmd_chat,
            "runs": cmd_runs,
            "serve": cmd_serve,
            **share_commands.COMMANDS,
        }[args.command](args)
    except AdapterError as e:
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the user's own paths: naming them helps
        if debug:
            log.exception("OS error")
        _error(_os_message(e))
        return 1
    except Exception as e:
        if debug:
            log.exception("Unexpected failure")
        _error(f"unexpected failure ({_reason(e)}); please report it")
        return 1


log = logging.getLogger("adapter_studio")


def _setup_logging() -> bool:
    """The library logs to `adapter_studio`; the CLI shows those records only with ADAPTER_STUDIO_DEBUG=1
    (otherwise its one `error:` line says what went wrong)."""
    debug = os.environ.get("ADAPTER_STUDIO_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    ours = [h for h in log.handlers if getattr(h, "adapter_studio_cli", False)]
    for handler in ours:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr) if debug else logging.NullHandler()
    handler.adapter_studio_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if debug:
        log.setLevel(logging.DEBUG)
    return debug


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _error(message: str) -> None:
    print(f"error: {_one_line(message)}", file=sys.stderr)


def _reason(e: BaseException, limit: int = 200) -> str:
    text = _one_line(str(e))
    reason = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _os_message(e: OSError) -> str:
    reason = e.strerror or _one_line(str(e)) or type(e).__name__
    return f"cannot use {e.filename}: {reason}" if e.filename else reason


def train_config(args: argparse.Namespace):
    """The TrainConfig that `train`'s options describe; the preset gives the bottleneck when neither it
    nor a reduction factor is given."""
    from .config import AdapterConfig
    from .engine.plan import PRESETS
    from .engine.train import TrainConfig

    if not args.data:
        raise AdapterError("train needs --data, the training file (or --resume to continue the run in --out).")
    out = Path(args.out)
    columns = {c: getattr(args, f"{c}_column") for c in ("text", "label", "instruction", "response", "input", "system")}
    bottleneck = args.bottleneck
    if bottleneck is None and args.reduction_factor is None:
        bottleneck = PRESETS[args.preset].bottleneck
    adapter = AdapterConfig(
        bottleneck=bottleneck,
        reduction_factor=args.reduction_factor,
        placement=args.placement,
        activation=args.activation,
        init=args.init,
        dropout=args.dropout,
        scaling=args.scaling,
        leave_out=args.leave_out,
        target_modules=args.target_modules,
    )
    return TrainConfig(
        base=args.base,
        data=args.data,
        task=args.task,
        name=args.name or out.name or "adapter",
        columns={k: v for k, v in columns.items() if v},
        val_data=args.val_data,
        val_fraction=args.val_fraction,
        adapter=adapter,
        base_dropout=args.base_dropout,
        pooling=args.pooling,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        preset=args.preset,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        seed=args.seed,
        eval_every=args.eval_every,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        mode=args.mode,
        precision=args.precision,
        device=args.device,
        early_stopping_patience=args.early_stopping_patience,
        report_to=args.report_to,
        init_from=args.init_from,
        sample_prompts=args.sample_prompts,
    )


@contextlib.contextmanager
def ctrl_c_stops(message: str, say: Callable[[str], object] | None = None) -> Iterator[threading.Event]:
    """Within the block, the first Ctrl-C sets the yielded event (the run stops after its current step and
    keeps what it learned; `say`, stderr by default, gives `message`) and a second one aborts."""
    stop = threading.Event()

    def ask_stop(*_):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        (say or partial(print, file=sys.stderr, flush=True))(message)

    previous = signal.signal(signal.SIGINT, ask_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState
    from tqdm import tqdm

    from .atomic import write_json_atomic
    from .engine.runs import Run, RunRecorder
    from .engine.train import multi_cpu, train

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
            raise AdapterError(f"Cannot write the run folder {args.out}: {e.strerror or _one_line(str(e))}.") from None
    record, bar = RunRecorder(run), None

    def on_event(event) -> None:
        nonlocal bar
        record(event)
        if event.kind in ("status", "data") and event.message:
            tqdm.write(event.message)
        elif event.kind == "warning":
            tqdm.write(f"warning: {event.message}")
        elif event.kind == "step":
            if bar is None:
                bar = tqdm(total=event.total_steps, initial=event.step - 1, unit="step", dynamic_ncols=True)
            bar.update(event.step - bar.n)
            bar.set_postfix(loss=f"{event.loss:.4f}", ex_s=f"{event.examples_per_sec:.0f}")
        elif event.kind == "eval":
            tqdm.write(f"step {event.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items()))
            for sample in (event.info or {}).get("samples", []):
                tqdm.write(f"  {_one_line(sample['prompt'])[:80]}\n    adapter: {_one_line(sample['adapter'])}")

    try:
        with ctrl_c_stops(
            "Stopping after this step; the adapter will be saved. Press Ctrl-C again to abort.", tqdm.write
        ) as stop:
            result = train(config, out, on_event, stop.is_set, resume=args.resume)
    except BaseException as e:
        if main_process:
            # The run folder may be gone or the disk full: then the error below says what failed.
            with contextlib.suppress(OSError):
                run.set_status("failed", message=_one_line(str(e)) or type(e).__name__)
        raise
    finally:
        if bar is not None:
            bar.close()
    if not main_process:
        return 0
    print(
        f"{result.status}{' (stopped early)' if result.stopped_early else ''}: {result.steps} steps in "
        f"{result.train_seconds:.0f}s ({result.examples_per_sec:.1f} examples/s); adapter in {result.adapter_dir}"
    )
    print(", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    if result.status == "stopped":
        print(f"Resume it with: python -m adapter_core train --resume --out {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.evaluation import evaluate_file, load_with_base
    from .engine.report import correct, format_per_class

    base, name = load_with_base(args.adapter)
    metrics = evaluate_file(base, name, args.data, args.max_length)
    if args.json:
        print(json.dumps(metrics))
        return 0
    report = metrics.pop("report", None)
    for k, v in metrics.items():
        print(f"{k:>12}: {v:.4f}" if isinstance(v, float) else f"{k:>12}: {v}")
    if report:
        print("\n" + format_per_class(report))
        mistakes = report["misclassified"][: args.show_mistakes]
        if mistakes:
            print(f"\nmost confident mistakes ({len(mistakes)} of {report['rows'] - correct(report)}):")
        for m in mistakes:
            text = _one_line(m["text"])[:100]
            print(f"  {m['confidence']:.3f}  true {m['true']}, predicted {m['predicted']}: {text}")
    return 0


def _numbers(flag: str, text: str, kind: type) -> list:
    """A comma-separated list of numbers from a flag, or an error that names the flag."""
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        what = "whole numbers" if kind is int else "numbers"
        raise AdapterError(f"{flag} must be {what} separated by commas (like 16,64); got {text!r}.")
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    import shutil

    from .atomic import write_json_atomic
    from .engine.runs import Run, RunRecorder
    from .engine.sweep import format_table, run_sweep, sweep_configs
    from .engine.train import TrainConfig

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"--out {args.out} is a file; give a folder for the sweep (it is created if needed).")
    base_config = TrainConfig(
        base=args.base,
        data=args.data,
        task=args.task,
        name=args.name or out.name or "sweep",
        val_data=args.val_data,
        val_fraction=args.val_fraction,
        preset=args.preset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        eval_every=args.eval_every,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        seed=args.seed,
        device=args.device,
    )
    placements = args.placements.split(",") if args.placements else None
    configs = sweep_configs(
        base_config,
        _numbers("--bottlenecks", args.bottlenecks, int),
        _numbers("--lrs", args.lrs, float),
        placements,
        args.patience,
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AdapterError(f"Cannot write the sweep folder {args.out}: {e.strerror or _one_line(str(e))}.") from None
    by_name = {c.name: c for c in configs}
    recorders: dict[str, RunRecorder] = {}

    def on_event(event) -> None:
        name = event.info["sweep_run"]
        if name not in recorders:  # a run starts: its folder holds config, status and events, as train's
            (out / name).mkdir(exist_ok=True)
            write_json_atomic(out / name / "config.json", by_name[name].to_dict())
            recorders[name] = RunRecorder(Run(out / name))
            print(f"run {event.info['sweep_index'] + 1}/{event.info['sweep_total']}: {name}", flush=True)
        recorders[name](event)
        if event.kind == "warning":
            print(f"  warning: {_one_line(event.message)}")
        elif event.kind == "eval":
            print(f"  step {event.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items()), flush=True)

    try:  # a first Ctrl-C ends this run (its adapter is saved) and the sweep
        with ctrl_c_stops("Stopping after this step; the run so far is kept. Press Ctrl-C again to abort.") as stop:
            result = run_sweep(configs, out, on_event, stop.is_set)
    except BaseException as e:
        if recorders:  # the run under way failed; the ones before it stay as they ended
            with contextlib.suppress(OSError):
                list(recorders.values())[-1].run.set_status("failed", message=_one_line(str(e)) or type(e).__name__)
        raise
    print("\n" + format_table(result))
    best = result.best
    summary = {"status": result.status, "metric": result.metric, "rows": result.rows, "best": best}
    if best:
        shutil.rmtree(out / "best", ignore_errors=True)
        shutil.copytree(result.best_adapter_dir, out / "best")
        score = best["metrics"][result.metric]
        print(f"\nbest: {best['name']} ({result.metric} {score:.4f}); adapter in {out / 'best'}")
    write_json_atomic(out / "sweep.json", summary)
    if result.status == "stopped":
        print("The sweep was stopped before its last run.")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.evaluation import load_with_base
    from .inference import classify

    base, name = load_with_base(args.adapter)
    predictions = classify(base.model, base.tokenizer, args.text, name)
    if args.json:
        print(
            json.dumps(
                [
                    {"text": t, "label": p.label, "confidence": p.confidence, "probabilities": p.probabilities}
                    for t, p in zip(args.text, predictions, strict=True)
                ]
            )
        )
        return 0
    for text, p in zip(args.text, predictions, strict=True):
        top = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:3]
        print(f"{p.label}\t{p.confidence:.3f}\t{text}")
        print("    " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .catalog import load_base
    from .engine.evaluation import load_with_base
    from .inference import stream_generate

    if args.adapter:
        base, name = load_with_base(args.adapter)
    elif args.base:
        base, name = load_base(args.base), None
    else:
        raise AdapterError("Give --adapter (an instruction adapter or run folder), or --base for the bare model.")
    for piece in stream_generate(base.model, base.tokenizer, args.prompt, name, args.max_new_tokens):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .serve.app import build_server

    app = build_server(
        args.library, args.router, args.fallback, args.api_key, args.max_batch, args.batch_window_ms / 1000
    )
    print(f"Serving {args.library} at http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .engine.runs import RunStore

    store = RunStore()
    runs, unreadable = store.list(), store.unreadable()
    if not runs and not unreadable:
        print(f"No runs yet in {store.root}.")
        return 0
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
    return 0
