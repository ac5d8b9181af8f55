"""A sweep on BANKING77 with MiniLM: bottleneck x learning rate, each run capped in optimizer steps and
stopping early, on one loaded base; the best run scored on a held-out test split.

    python bench/sweep.py [--bottlenecks 16,64,256] [--lrs 1e-3,2e-3,5e-3] [--steps 600] [--fast]

The data is sample_data/banking77/train.csv (PolyAI, CC BY 4.0). As bench/banking77.py: a stratified
10% test split (seed 0) that no run sees. Of the rest, a stratified validation file of `--val-rows`
rows (seed 0; smaller than a 10% split, so the evaluations that early stopping needs cost less of the
budget), and the other rows train. Each run trains at batch 32 for at most `--steps` optimizer steps
(a cap in steps, not seconds, so that the accuracies do not depend on how busy the machine is; the
seconds do) and stops early after `--patience` evaluations without a better validation accuracy; it
evaluates every `--eval-every` steps. `--budget` adds a cap in training seconds. Prints one JSON line
last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from adapter_core import load_adapter, load_base
from adapter_core.engine import evaluate_file
from adapter_core.engine.data import load_data, split
from adapter_core.engine.sweep import run_sweep, sweep_configs
from adapter_core.engine.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data" / "banking77" / "train.csv"  # PolyAI, CC BY 4.0: see sample_data/README.md


def make_files(work: Path, val_rows: int, fast: bool) -> tuple[Path, Path, Path]:
    data = load_data(DATA, "classification")
    rest, test = split(data, 0.1, seed=0)
    if fast:
        rest, test = rest.sample(1500, random_state=0), test.sample(300, random_state=0)
    train, val = split(replace(data, frame=rest), val_rows / len(rest), seed=0)
    paths = work / "train.csv", work / "val.csv", work / "test.csv"
    for frame, path in zip((train, val, test), paths, strict=True):
        frame[["text", "label"]].to_csv(path, index=False)
    return paths


def test_accuracy(adapter_dir: Path, test_path: Path, max_length: int) -> dict[str, float]:
    """The best adapter, loaded from its folder onto a fresh base, on the test split."""
    base = load_base("minilm")
    return evaluate_file(base, load_adapter(base.model, adapter_dir), test_path, max_length=max_length)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bottlenecks", default="16,64,256")
    ap.add_argument("--lrs", default="1e-3,2e-3,5e-3")
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps per run at most")
    ap.add_argument("--budget", type=float, default=0, help="training seconds per run at most (0: no cap)")
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--val-rows", type=int, default=500)
    ap.add_argument("--max-length", type=int, default=64)  # BANKING77's queries: 99.9% are shorter
    ap.add_argument("--seed", type=int, default=TrainConfig().seed)
    ap.add_argument("--fast", action="store_true", help="a 1,500-row sample, a 2 x 2 grid and 20 steps a run")
    args = ap.parse_args()
    bottlenecks = [int(x) for x in args.bottlenecks.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    steps, val_rows, eval_every = args.steps, args.val_rows, args.eval_every
    if args.fast:
        bottlenecks, lrs, steps, val_rows, eval_every = bottlenecks[:2], lrs[:2], 20, 150, 10
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_path, val_path, test_path = make_files(work, val_rows, args.fast)
        base = TrainConfig(
            base="minilm",
            data=str(train_path),
            val_data=str(val_path),
            name="b77",
            batch_size=32,
            epochs=4.0,
            max_length=args.max_length,
            max_steps=steps,
            max_seconds=args.budget,
            eval_every=eval_every,
            seed=args.seed,
        )
        configs = sweep_configs(base, bottlenecks, lrs, patience=args.patience)
        walls: dict[str, list[float]] = {}

        def on_event(event) -> None:  # wall time per run: its first event to its last
            walls.setdefault(event.info["sweep_run"], []).append(time.perf_counter())
            if event.kind == "done":
                m = event.metrics or {}
                run, wall = event.info["sweep_run"], time.perf_counter() - walls[event.info["sweep_run"]][0]
                print(
                    f"{run}: {event.step} steps, val accuracy {m.get('accuracy', 0):.4f}, macro-F1 "
                    f"{m.get('macro_f1', 0):.4f}, {event.elapsed_s:.0f} s training, {wall:.0f} s in all"
                    f"{', stopped early' if event.info.get('stopped_early') else ''}",
                    flush=True,
                )

        result = run_sweep(configs, work / "sweep", on_event)
        best = result.best
        test = test_accuracy(Path(best["adapter_dir"]), test_path, args.max_length)
    rows = [
        {
            "run": r["name"],
            "bottleneck": r["bottleneck"],
            "lr": r["lr"],
            "val_accuracy": round(r["accuracy"], 4),
            "val_macro_f1": round(r["macro_f1"], 4),
            "steps": r["steps"],
            "train_seconds": r["train_seconds"],
            "wall_seconds": round(walls[r["name"]][-1] - walls[r["name"]][0], 1),
            "trainable_params": r["trainable"],
            "stopped_early": r["stopped_early"],
        }
        for r in result.rows
    ]
    for r in rows:
        print(
            f"{r['run']:>18}: val accuracy {r['val_accuracy']:.2%}, macro-F1 {r['val_macro_f1']:.3f}, "
            f"{r['steps']} steps, {r['train_seconds']:.0f} s training ({r['wall_seconds']:.0f} s with evaluation), "
            f"{r['trainable_params']:,} parameters{', stopped early' if r['stopped_early'] else ''}"
        )
    summary = {
        "bench": "sweep",
        "max_steps": steps,
        "budget_s": args.budget,
        "val_rows": val_rows,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "best": rows[0]["run"],
        "best_test_accuracy": round(test["accuracy"], 4),
        "best_test_macro_f1": round(test["macro_f1"], 4),
        "total_wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
