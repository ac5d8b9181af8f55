"""`python -m adapter_core`: train, evaluate, predict, chat and list runs from the shell."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from .errors import AdapterError

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


def _preset_name(text: str) -> str:
    """A preset's name as PRESETS spells it, from any case and with - or _ for spaces (quick-look)."""
    from .engine.plan import PRESETS

    wanted = text.replace("-", " ").replace("_", " ").strip().lower()
    return next((name for name in PRESETS if name.lower() == wanted), text)


def build_parser() -> argparse.ArgumentParser:
    from .engine.plan import PRESETS
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
    t.add_argument("--data", required=True, help="training file: .csv, .tsv or .jsonl with a header")
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
        + ")",
    )
    t.add_argument("--placement", default=d.placement, choices=["houlsby", "pfeiffer", "parallel"])
    t.add_argument("--activation", default=d.activation, choices=["gelu", "relu", "swish", "tanh"])
    t.add_argument("--dropout", type=float, default=d.dropout, help="the adapter's own dropout")
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
    t.add_argument("--out", required=True, help="run folder to create; the adapter goes to OUT/adapter")

    e = sub.add_parser("evaluate", help="accuracy and macro-F1 (or loss and perplexity) on a labelled file")
    e.add_argument("--adapter", required=True, help="adapter folder, or a run folder")
    e.add_argument("--data", required=True)
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--json", action="store_true", help="print one JSON object")

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
        "--library", required=True, help="a folder of adapter folders (the studio's: ~/.adapter_studio/adapters)"
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
            "predict": cmd_predict,
            "chat": cmd_chat,
            "runs": cmd_runs,
            "serve": cmd_serve,
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


def cmd_train(args: argparse.Namespace) -> int:
    import signal

    from accelerate import PartialState
    from tqdm import tqdm

    from .atomic import write_json_atomic
    from .engine.plan import PRESETS
    from .engine.runs import Run
    from .engine.train import TrainConfig, multi_cpu, train

    out = Path(args.out)
    columns = {c: getattr(args, f"{c}_column") for c in ("text", "label", "instruction", "response", "input", "system")}
    config = TrainConfig(
        base=args.base,
        data=args.data,
        task=args.task,
        name=args.name or out.name or "adapter",
        columns={k: v for k, v in columns.items() if v},
        val_data=args.val_data,
        val_fraction=args.val_fraction,
        bottleneck=PRESETS[args.preset].bottleneck if args.bottleneck is None else args.bottleneck,
        placement=args.placement,
        activation=args.activation,
        dropout=args.dropout,
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
    )
    config.check()  # bad settings fail before anything is written
    main_process = PartialState(cpu=multi_cpu()).is_main_process  # under torchrun, rank 0 alone writes the run folder
    run = Run(out)
    if main_process:
        if out.exists() and not out.is_dir():
            raise AdapterError(f"--out {args.out} is a file; give a folder for the run (it is created if needed).")
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "config.json", config.to_dict())
            run.set_status("loading")
        except OSError as e:
            raise AdapterError(f"Cannot write the run folder {args.out}: {e.strerror or _one_line(str(e))}.") from None
    stop = {"asked": False}

    def ask_stop(*_):  # first Ctrl-C: finish this step and save; second: abort
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        tqdm.write("Stopping after this step; the adapter will be saved. Press Ctrl-C again to abort.")

    signal.signal(signal.SIGINT, ask_stop)
    bar = None

    def on_event(event) -> None:
        nonlocal bar
        run.append_event(event.to_dict())
        if event.kind in ("status", "data") and event.message:
            tqdm.write(event.message)
        elif event.kind == "warning":
            tqdm.write(f"warning: {event.message}")
        elif event.kind == "step":
            if bar is None:
                bar = tqdm(total=event.total_steps, unit="step", dynamic_ncols=True)
            bar.update(event.step - bar.n)
            bar.set_postfix(loss=f"{event.loss:.4f}", ex_s=f"{event.examples_per_sec:.0f}")
        elif event.kind == "eval":
            tqdm.write(f"step {event.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items()))

    try:
        result = train(config, out, on_event, lambda: stop["asked"])
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
    run.set_status(
        result.status,
        metrics=result.metrics,
        steps=result.steps,
        train_seconds=result.train_seconds,
        examples_per_sec=result.examples_per_sec,
    )
    print(
        f"{result.status}: {result.steps} steps in {result.train_seconds:.0f}s "
        f"({result.examples_per_sec:.1f} examples/s); adapter in {result.adapter_dir}"
    )
    print(", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.evaluation import evaluate_file, load_with_base

    base, name = load_with_base(args.adapter)
    metrics = evaluate_file(base, name, args.data, args.max_length)
    if args.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            print(f"{k:>12}: {v:.4f}" if isinstance(v, float) else f"{k:>12}: {v}")
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
