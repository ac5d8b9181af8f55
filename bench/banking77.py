"""BANKING77 on MiniLM: a Houlsby adapter (r=64) with the CLI's defaults, against head-only training and
full fine-tuning under the same time budget, side by side in one run.

    python bench/banking77.py [--budget 600] [--fast] [--base-dropout on|off|both] [--seed 42]

The data is sample_data/banking77/train.csv (PolyAI, CC BY 4.0). We hold out a stratified 10% test
split (seed 0) that no run sees; each run holds out its own validation split of the rest to pick its
best checkpoint, and is scored on the test split. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from adapter_core.engine import evaluate_file
from adapter_core.engine.data import load_data, split
from adapter_core.engine.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data" / "banking77" / "train.csv"  # PolyAI, CC BY 4.0: see sample_data/README.md


def make_split(work: Path, fast: bool) -> tuple[Path, Path]:
    data = load_data(DATA, "classification")
    rest, test = split(data, 0.1, seed=0)
    if fast:
        rest, test = rest.sample(1500, random_state=0), test.sample(300, random_state=0)
    train_path, test_path = work / "train.csv", work / "test.csv"
    rest[["text", "label"]].to_csv(train_path, index=False)
    test[["text", "label"]].to_csv(test_path, index=False)
    return train_path, test_path


def run(mode: str, lr: float, train_path: Path, test_path: Path, budget: float, work: Path, **overrides) -> dict:
    config = TrainConfig(
        base="minilm", data=str(train_path), name=f"b77-{mode}", mode=mode, lr=lr, max_seconds=budget, **overrides
    )
    t0 = time.perf_counter()
    result = train(config, work / f"{mode}-{config.base_dropout}")
    wall = time.perf_counter() - t0
    model = result.base.model
    metrics = evaluate_file(result.base, config.name, test_path, max_length=config.max_length)  # as the CLI does
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = {
        "mode": mode,
        "base_dropout": config.base_dropout or mode == "full",
        "seed": config.seed,
        "lr": lr,
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_macro_f1": round(metrics["macro_f1"], 4),
        "val_accuracy": round(result.metrics["accuracy"], 4),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "steps": result.steps,
        "examples_per_sec": round(result.examples_per_sec, 1),
        "trainable_params": trainable,
        "trainable_pct": round(100 * trainable / sum(p.numel() for p in model.parameters()), 2),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=600, help="training seconds per run")
    ap.add_argument("--fast", action="store_true", help="a 1,500-row sample and a 60 s budget, to try the script")
    ap.add_argument("--modes", default="adapter,head,full")
    ap.add_argument("--epochs", type=float, default=4.0)  # the recorded runs' (auto picks the same here)
    ap.add_argument("--max-length", type=int, default=TrainConfig().max_length)
    ap.add_argument("--seed", type=int, default=TrainConfig().seed)
    ap.add_argument(
        "--base-dropout",
        choices=["on", "off", "both"],
        default="on" if TrainConfig().base_dropout else "off",
        help="the frozen base's dropout in the adapter and head runs ('both': a run with each)",
    )
    args = ap.parse_args()
    budget = min(60, args.budget) if args.fast else args.budget
    lrs = {"adapter": 2e-3, "head": 1e-2, "full": 1e-4}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_path, test_path = make_split(work, args.fast)
        settings = {"on": [True], "off": [False], "both": [True, False]}[args.base_dropout]
        common = {"epochs": args.epochs, "max_length": args.max_length, "seed": args.seed}
        rows = [
            run(m, lrs[m], train_path, test_path, budget, work, base_dropout=drop, **common)
            for m in args.modes.split(",")
            for drop in (settings if m != "full" else [True])
        ]
    # With both settings, the comparison with full fine-tuning uses the default one.
    by = {r["mode"]: r for r in rows if r["base_dropout"] == TrainConfig().base_dropout or r["mode"] == "full"}
    summary = {"bench": "banking77", "budget_s": budget, "threads": torch.get_num_threads(), "rows": rows}
    if "adapter" in by and "full" in by:
        summary["adapter_minus_full_points"] = round(
            100 * (by["adapter"]["test_accuracy"] - by["full"]["test_accuracy"]), 2
        )
        summary["adapter_step_time_vs_full"] = round(
            by["full"]["examples_per_sec"] / by["adapter"]["examples_per_sec"], 3
        )
    for r in rows:
        print(
            f"{r['mode']:>8} (base dropout {'on' if r['base_dropout'] else 'off'}): "
            f"test accuracy {r['test_accuracy']:.2%}, macro-F1 {r['test_macro_f1']:.3f}, "
            f"{r['train_seconds']:.0f} s training, {r['examples_per_sec']} examples/s, "
            f"{r['trainable_pct']}% of parameters trained"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
