"""Defaults that learn (issue 14): the old fixed defaults against the new auto ones, side by side.

    python bench/defaults.py [--quick] [--datasets routing,orders,...] [--variants old,new,...]
                             [--threads N] [--banking77-budget S]

Each dataset is trained with up to four settings, in one process, on the same splits and seed:

- old: the fixed defaults before issue 14, epochs 4, batch 32, lr 2e-3, r=64 (the studio's
  "Balanced" preset and the CLI alike, for both tasks);
- new: every setting auto (TrainConfig() with the Balanced preset): the plan sizes the run in
  optimizer steps;
- old-quick: the studio's old "Quick look" preset, r=16, 1 epoch, lr 3e-3, batch 32;
- new-quick: the "Quick look" preset with auto settings;
- quick-b8: the same at batch 8, as it was before its budget became 2 minutes (issue 25).

Quality is measured on rows no run trains on: a 10% test split (seed 0) of each bundled sample (the
last 16 rows of house_style_sft.csv, its held-out prompts), and for BANKING77 the split of
bench/banking77.py. Classification: test accuracy. Instruction: the best validation loss, and the
share of held-out prompts whose greedy answer follows the file's house style (a regex per file), with
the repetition guard on; "loops" counts the answers it stopped. When the new settings come out the
same as the old (a large file), the run is not repeated. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from adapter_core import AdapterConfig, RepetitionGuard, generate_batch, get_record
from adapter_core.engine import evaluate_file
from adapter_core.engine.batches import tokenize
from adapter_core.engine.data import load_data, split
from adapter_core.engine.machine_speed import per_token
from adapter_core.engine.run_time import planned_seconds
from adapter_core.engine.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
OLD = {"epochs": 4.0, "batch_size": 32, "lr": 2e-3, "bottleneck": 64}
VARIANTS = {
    "old": OLD,
    "new": {"preset": "Balanced", "bottleneck": 64},
    "old-quick": {"epochs": 1.0, "batch_size": 32, "lr": 3e-3, "bottleneck": 16},
    "new-quick": {"preset": "Quick look", "bottleneck": 16},
    "quick-b8": {"preset": "Quick look", "bottleneck": 16, "batch_size": 8},  # Quick look before its 2-min budget
}
STYLE = {
    "orders": r"Hello from the Orders Desk! Reference ORD-\d{5}\. .+ Happy shopping, The Orders Desk\.",
    "tech": r"Tech Support ticket TS-\d{4}\. Please try these steps: 1\) .+ 2\) .+ 3\) .+ "
    r"Reply to this ticket if it persists\. - Tech Support",
    "billing": r"Dear customer, thank you for contacting Billing \(case BIL-\d{6}\)\. .+ Kind regards, the Billing Team\.",
    "house": r"Case #\d{4} \| Item: [^|]+ \| Action: [^|]+ \| Signed: the Repair Desk",
}
DATASETS = {  # name: (file, task, base)
    "routing": ("support_routing.csv", "classification", "minilm"),
    "house": ("house_style_sft.csv", "instruction", "smollm2-135m-instruct"),
    "orders": ("orders_sft.csv", "instruction", "smollm2-135m-instruct"),
    "tech": ("tech_support_sft.csv", "instruction", "smollm2-135m-instruct"),
    "billing": ("billing_sft.csv", "instruction", "smollm2-135m-instruct"),
    "banking77": (None, "classification", "minilm"),
}
QUICK = {"routing": list(VARIANTS), "orders": ["old-quick", "new-quick"], "house": ["old", "new"]}


def make_split(name: str, work: Path) -> tuple[Path, Path]:
    """Training and held-out test files for dataset `name`."""
    file, task, _ = DATASETS[name]
    train_path, test_path = work / f"{name}-train.csv", work / f"{name}-test.csv"
    if name == "banking77":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from banking77 import make_split as banking_split

        return banking_split(work, fast=False)
    if name == "house":  # the file's own split: 80 pairs to train on, 16 held-out prompts
        rows = pd.read_csv(SAMPLES / file)
        rows.iloc[:80].to_csv(train_path, index=False)
        rows.iloc[80:].to_csv(test_path, index=False)
        return train_path, test_path
    data = load_data(SAMPLES / file, task)
    rest, test = split(data, 0.1, seed=0)
    columns = ["text", "label"] if task == "classification" else ["instruction", "response"]
    rest[columns].to_csv(train_path, index=False)
    test[columns].to_csv(test_path, index=False)
    return train_path, test_path


def score(name: str, result, config: TrainConfig, test_path: Path) -> dict:
    model, tokenizer = result.base.model, result.base.tokenizer
    if config.task == "classification":
        metrics = evaluate_file(result.base, config.name, test_path, max_length=config.max_length)
        return {"test_accuracy": round(metrics["accuracy"], 4), "val_accuracy": round(result.metrics["accuracy"], 4)}
    test = pd.read_csv(test_path)
    guard = RepetitionGuard()
    t0 = time.perf_counter()
    answers = generate_batch(model, tokenizer, list(test["instruction"]), config.name, max_new_tokens=96, guard=guard)
    styled = sum(bool(re.fullmatch(STYLE[name], a.strip())) for a in answers)
    return {
        "val_loss": round(result.metrics["val_loss"], 4),
        "style": f"{styled}/{len(answers)}",
        "style_share": round(styled / len(answers), 3),
        "loops": sum(guard.fired),
        "generate_seconds": round(time.perf_counter() - t0, 1),
        "sample_answer": answers[0][:160],
    }


MEASURED: dict[str, float] = {}  # base -> seconds per training token, as its latest run here measured it


def run(name: str, variant: str, train_path: Path, test_path: Path, work: Path, budget: float, seed: int) -> dict:
    _, task, base = DATASETS[name]
    settings = dict(VARIANTS[variant])
    config = TrainConfig(
        adapter=AdapterConfig(bottleneck=settings.pop("bottleneck")),
        base=base,
        task=task,
        data=str(train_path),
        name=f"{name}-{variant}",
        max_length=64 if name == "banking77" else 128,
        max_seconds=budget,
        seed=seed,
        **settings,
    )
    t0, started = time.perf_counter(), {}
    measured = MEASURED.get(base)  # this machine's speed on this base, as the previous run here measured it

    def on_event(e) -> None:  # when training starts, and the whole run's time left then (measured steps)
        if e.kind == "status" and e.status == "training":
            started.update(
                at=time.perf_counter(), estimate=e.info.get("estimated_seconds"), val_rows=e.info["val_rows"]
            )

    result = train(config, work / f"{name}-{variant}", on_event)
    wall = time.perf_counter() - t0
    plan = result.plan
    after_start = time.perf_counter() - started["at"]
    lengths = tokenize(
        load_data(train_path, task).frame, task, result.base.tokenizer, config.max_length, result_labels(result, config)
    )["length"]
    tokens = sum(lengths) / len(lengths)
    at_measured = measured and planned_seconds(plan, config, started["val_rows"], tokens, measured)
    row = {
        "dataset": name,
        "variant": variant,
        "seed": seed,
        "bottleneck": config.adapter.bottleneck,
        "batch_size": plan.batch_size,
        "epochs": plan.epochs,
        "lr": plan.lr,
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "examples_per_sec": round(result.examples_per_sec, 2),
        "seconds_per_token": round(1 / (result.examples_per_sec * tokens), 5),
        "estimated_seconds": None if plan.estimated_seconds is None else round(plan.estimated_seconds),
        # One time estimate (issue 25): the whole run before Start at the plan's CPU figure, and from the
        # training event on at the measured step time, against what it took.
        "planned_whole_seconds": _round(planned_seconds(plan, config, started["val_rows"], tokens)),
        # ...and before Start at the speed the previous run of this base measured (the studio's estimate
        # once a base has trained on the machine: engine/machine_speed.py).
        "planned_at_measured_speed": _round(at_measured),
        "estimate_at_training": _round(started["estimate"]),
        "after_training_event": round(after_start, 1),
        "actual_over_estimate": round(after_start / started["estimate"], 2) if started["estimate"] else None,
        "actual_over_measured_plan": round(after_start / at_measured, 2) if at_measured else None,
        "warnings": result.warnings,
        **score(name, result, config, test_path),
    }
    MEASURED[base] = per_token(result.train_seconds, result.steps, plan.batch_size * config.grad_accum, tokens)
    print(json.dumps(row), flush=True)
    return row


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def result_labels(result, config: TrainConfig) -> list[str] | None:
    return get_record(result.base.model, config.name).labels if config.task == "classification" else None


def same_settings(row: dict, variant: str) -> bool:
    """Whether `row` (a new-* run) trained with exactly the old variant's settings."""
    old = VARIANTS[variant]
    return all(row[k] == old[k] for k in ("batch_size", "epochs", "lr", "bottleneck"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="routing (all four), orders (the quick looks), house (old, new)"
    )
    ap.add_argument("--datasets", default=",".join(d for d in DATASETS if d != "banking77"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=42, help="the runs' seed (adapter initialisation, data order)")
    ap.add_argument("--banking77-budget", type=float, default=0, help="training seconds per BANKING77 run (0: none)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else {d: args.variants.split(",") for d in args.datasets.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, variants in plan.items():
            train_path, test_path = make_split(name, work)
            budget = args.banking77_budget if name == "banking77" else 0
            done: dict[str, dict] = {}
            # New first: an old variant with the very same settings is then not trained again.
            for variant in sorted(variants, key=lambda v: not v.startswith("new")):
                twin = done.get("new" + variant[3:]) if variant.startswith("old") else None
                if twin is not None and same_settings(twin, variant):
                    row = {**twin, "variant": variant, "same_as": twin["variant"]}
                    print(json.dumps(row), flush=True)
                else:
                    row = run(name, variant, train_path, test_path, work, budget, args.seed)
                done[variant] = row
                rows.append(row)
    print()
    for r in sorted(rows, key=lambda r: (r["dataset"], r["variant"])):
        quality = (
            f"test accuracy {r['test_accuracy']:.2%}"
            if "test_accuracy" in r
            else f"val loss {r['val_loss']:.3f}, style {r['style']}, loops {r['loops']}"
        )
        print(
            f"{r['dataset']:>9} {r['variant']:<9} r={r['bottleneck']:<3} batch {r['batch_size']:<2} "
            f"epochs {r['epochs']:<7g} lr {r['lr']:<7g} {r['steps']:>5} steps {r['train_seconds']:>7.1f} s  {quality}"
            + (f"  (same settings as {r['same_as']})" if "same_as" in r else "")
        )
    print(json.dumps({"bench": "defaults", "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
