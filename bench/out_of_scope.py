"""The out-of-scope fallback on BANKING77: a MiniLM router trained on 67 intents meets the other 10.

    python bench/out_of_scope.py [--budget 600] [--fast] [--seed 42] [--unseen 10]

The data is sample_data/banking77/train.csv (PolyAI, CC BY 4.0). `--unseen` intents, a seeded
random choice (printed), are held out of training entirely: their rows are the out-of-scope queries.
The rest gets a stratified 10% test split (seed 0) that the run never sees, and a 10% validation split
(the run's seed) passed as the run's validation file, so the calibration can be recomputed here at
other in-scope recall targets. The run keeps the default settings (batch, epochs and learning rate
auto) under a `--budget` of training seconds; its calibrated threshold is read back from the saved
adapter_config.json. Prints a table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from adapter_core import get_record, read_adapter_config
from adapter_core.engine.batches import tokenize
from adapter_core.engine.calibration import IN_SCOPE_RECALL, calibrate, confidences
from adapter_core.engine.data import load_data, split
from adapter_core.engine.train import TrainConfig, train
from adapter_core.routing import saved_threshold

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data" / "banking77" / "train.csv"  # PolyAI, CC BY 4.0: see sample_data/README.md
TARGETS = (0.90, IN_SCOPE_RECALL, 0.99)


def make_splits(work: Path, unseen: int, seed: int, fast: bool) -> tuple[list[str], dict[str, Path]]:
    """The held-out intents, and train/val/test/unseen CSV files."""
    data = load_data(DATA, "classification")
    held = sorted(np.random.default_rng(seed).choice(data.labels, unseen, replace=False).tolist())
    out = data.frame["label"].isin(held)
    known = replace(data, frame=data.frame[~out].reset_index(drop=True), labels=None)
    rest, test = split(known, 0.1, seed=0)
    train_df, val_df = split(replace(known, frame=rest), 0.1, seed=seed)
    frames = {"train": train_df, "val": val_df, "test": test, "unseen": data.frame[out]}
    if fast:
        sizes = {"train": 1500, "val": 300, "test": 300, "unseen": 300}
        frames = {k: f.sample(min(sizes[k], len(f)), random_state=0) for k, f in frames.items()}
    paths = {k: work / f"{k}.csv" for k in frames}
    for k, f in frames.items():
        f[["text", "label"]].to_csv(paths[k], index=False)
    return held, paths


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(a random in-scope row is more confident than a random unseen one), ties counting half."""
    neg_sorted = np.sort(np.asarray(neg))
    p = np.asarray(pos)
    below = np.searchsorted(neg_sorted, p, side="left")
    at_or_below = np.searchsorted(neg_sorted, p, side="right")
    return float((below + 0.5 * (at_or_below - below)).sum() / (len(p) * len(neg_sorted)))


def rates(threshold: float, test: tuple[list[float], list[bool]], unseen: list[float]) -> dict:
    """What the fallback does at `threshold` on the in-scope test rows and the unseen queries."""
    conf, correct = np.asarray(test[0]), np.asarray(test[1])
    accepted = conf >= threshold
    return {
        "threshold": threshold,
        "in_scope_fallback": round(float((~accepted).mean()), 4),
        "accepted_accuracy": round(float(correct[accepted].mean()), 4) if accepted.any() else None,
        "correct_kept": round(float(accepted[correct].mean()), 4) if correct.any() else None,
        "unseen_recall": round(float((np.asarray(unseen) < threshold).mean()), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=600, help="training seconds (0: none)")
    ap.add_argument("--fast", action="store_true", help="small samples and a 60 s budget, to try the script")
    ap.add_argument("--seed", type=int, default=TrainConfig().seed, help="the held-out intents' and the run's")
    ap.add_argument("--unseen", type=int, default=10, help="intents held out of training")
    args = ap.parse_args()
    budget = min(60, args.budget or 60) if args.fast else args.budget
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        held, paths = make_splits(work, args.unseen, args.seed, args.fast)
        print(f"Held-out intents (seed {args.seed}): {', '.join(held)}", flush=True)
        config = TrainConfig(
            base="minilm",
            data=str(paths["train"]),
            val_data=str(paths["val"]),
            name="b77-oos",
            max_seconds=budget,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        result = train(config, work / "run")
        wall = time.perf_counter() - t0
        saved = read_adapter_config(result.adapter_dir)
        threshold = saved_threshold(saved)
        if threshold is None:
            sys.exit("The run saved no out-of-scope threshold in its adapter_config.json.")
        model, tokenizer = result.base.model, result.base.tokenizer
        labels = get_record(model, config.name).labels
        scored = {}
        for part in ("val", "test", "unseen"):
            frame = load_data(paths[part], "classification").frame
            if part == "unseen":  # labels the adapter has never seen; only the confidence counts
                frame = frame.assign(label=labels[0])
            ds = tokenize(frame, "classification", tokenizer, config.max_length, labels)
            scored[part] = confidences(model, config.name, ds, tokenizer.pad_token_id)
    test, unseen = scored["test"], scored["unseen"][0]
    at_targets = {}
    for target in TARGETS:
        t = calibrate(*scored["val"], target)["threshold"]
        at_targets[f"{target:g}"] = rates(t, test, unseen)
    calibrated = rates(threshold, test, unseen)
    summary = {
        "bench": "out_of_scope",
        "budget_s": budget,
        "threads": torch.get_num_threads(),
        "held_out_intents": held,
        "rows": {"train": result.plan.rows, "val": len(scored["val"][0]), "test": len(test[0]), "unseen": len(unseen)},
        "steps": result.steps,
        "planned_steps": result.plan.total_steps,
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "val_accuracy": round(result.metrics["accuracy"], 4),
        "in_scope_accuracy": round(float(np.mean(test[1])), 4),
        "saved": saved["out_of_scope"],
        "recomputed_matches_saved": at_targets[f"{IN_SCOPE_RECALL:g}"]["threshold"] == threshold,
        "calibrated": calibrated,
        "auroc": round(auroc(test[0], unseen), 4),
        "targets": at_targets,
    }
    print(
        f"\n{summary['rows']['train']} training rows, {result.steps} of {result.plan.total_steps} steps in "
        f"{result.train_seconds:.0f} s; in-scope test accuracy {summary['in_scope_accuracy']:.2%} "
        f"({len(test[0])} rows), {len(unseen)} unseen queries, AUROC {summary['auroc']:.4f}"
    )
    table = pd.DataFrame(
        [
            {
                "recall target": f"{target:g}" + (" (saved)" if f"{target:g}" == f"{IN_SCOPE_RECALL:g}" else ""),
                "threshold": r["threshold"],
                "in-scope to fallback": f"{r['in_scope_fallback']:.2%}",
                "accuracy of accepted": f"{r['accepted_accuracy']:.2%}" if r["accepted_accuracy"] is not None else "-",
                "correct rows kept": f"{r['correct_kept']:.2%}" if r["correct_kept"] is not None else "-",
                "unseen caught": f"{r['unseen_recall']:.2%}",
            }
            for target, r in zip(TARGETS, at_targets.values(), strict=True)
        ]
    )
    print(table.to_string(index=False))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
