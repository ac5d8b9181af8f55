"""Out-of-scope scores side by side on BANKING77: a MiniLM router trained on 67 intents meets the other 10.

    python bench/out_of_scope.py [--budget 600] [--max-steps N] [--per-intent N] [--seeds 42 43 44]
                                 [--split-seed 42 7 3] [--set KEY=VALUE ...]

The data is sample_data/banking77/train.csv (PolyAI, CC BY 4.0). `--unseen` intents, a seeded random
choice (`--split-seed`, printed), are held out of training entirely: their rows are the out-of-scope
queries. Several split seeds measure each score on several sets of held-out intents, one after another
(a score can do well on one set of ten neighbours and badly on another). The rest gets a stratified 10%
test split (seed 0) that no run sees, then a 10% validation split (each run's seed) passed as the run's
validation file. Each seed trains one adapter with the default settings under a `--budget` of training
seconds; the scores are post-hoc, so that one adapter serves every score (`adapter_core/out_of_scope.py`):
its training statistics are the ones the run saved.

Per score: AUROC (in-scope test rows against unseen queries), FPR at 95% TPR (the share of unseen
queries accepted when 95% of the in-scope test rows are), the unseen queries caught at exactly 5% false
rejection of the in-scope test rows (one operating point for every score), and, at the threshold
calibrated on the validation rows for `--false-rejection` (5%), the unseen queries caught and the
in-scope test rows rejected. `msp (before)` is the top probability with the threshold set the old way, on the correctly
classified validation rows only. Prints a table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from adapter_core import get_record, read_adapter_config
from adapter_core.engine.batches import tokenize
from adapter_core.engine.calibration import FALSE_REJECTION, fit, ood_metrics, predictions, threshold_for
from adapter_core.engine.data import load_data, split
from adapter_core.engine.evaluation import load_with_base
from adapter_core.engine.train import TrainConfig, train
from adapter_core.out_of_scope import SCORES, scores

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data" / "banking77" / "train.csv"  # PolyAI, CC BY 4.0: see sample_data/README.md


def make_splits(
    work: Path, unseen: int, split_seed: int, seed: int, fast: bool, per_intent: int = 0
) -> tuple[list[str], dict[str, Path]]:
    """The held-out intents, and train/val/test/unseen CSV files. `per_intent`: a smaller run, with that
    many training rows of each intent, a sixth as many validation rows, and 600 test and unseen rows."""
    data = load_data(DATA, "classification")
    held = sorted(np.random.default_rng(split_seed).choice(data.labels, unseen, replace=False).tolist())
    out = data.frame["label"].isin(held)
    known = replace(data, frame=data.frame[~out].reset_index(drop=True), labels=None)
    rest, test = split(known, 0.1, seed=0)
    train_df, val_df = split(replace(known, frame=rest), 0.1, seed=seed)
    frames = {"train": train_df, "val": val_df, "test": test, "unseen": data.frame[out]}
    if per_intent:
        shuffled = {k: f.sample(frac=1, random_state=seed) for k, f in frames.items()}
        frames = {
            "train": shuffled["train"].groupby("label").head(per_intent),
            "val": shuffled["val"].groupby("label").head(max(2, per_intent // 6)),
            "test": shuffled["test"].head(600),
            "unseen": shuffled["unseen"].head(600),
        }
    if fast:
        sizes = {"train": 1500, "val": 300, "test": 300, "unseen": 300}
        frames = {k: f.sample(min(sizes[k], len(f)), random_state=0) for k, f in frames.items()}
    paths = {k: work / f"{k}.csv" for k in frames}
    for k, f in frames.items():
        f[["text", "label"]].to_csv(paths[k], index=False)
    return held, paths


def measure(name: str, threshold: float, stats, p: dict, correct: np.ndarray) -> dict:
    """`calibration.ood_metrics` on the in-scope test rows and the unseen queries, and the accuracy of
    the in-scope rows the threshold accepts."""
    m = ood_metrics(name, threshold, stats, p["test"], p["unseen"])
    test = scores(name, p["test"].features, p["test"].logits, stats)[name]
    accepted = test.numpy() <= threshold
    at_5 = threshold_for(test, 0.05)  # the same operating point for every score, on the test rows themselves
    return {
        "auroc": m["auroc"],
        "fpr95": m["fpr_at_95_tpr"],
        "recall_at_5_test": ood_metrics(name, at_5, stats, p["test"], p["unseen"])["oos_recall"],
        "recall": m["oos_recall"],
        "false_rejection": m["in_scope_false_rejection"],
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else float("nan"),
    }


def one_seed(args, split_seed: int, seed: int, work: Path) -> dict:
    held, paths = make_splits(work, args.unseen, split_seed, seed, args.fast, args.per_intent)
    print(f"Seed {seed}; held-out intents (split seed {split_seed}): {', '.join(held)}", flush=True)
    config = TrainConfig(
        base="minilm", data=str(paths["train"]), val_data=str(paths["val"]), name="b77-oos",
        max_seconds=args.budget, seed=seed, max_steps=args.max_steps, eval_every=args.eval_every,
        **dict(args.set),
    )  # fmt: skip
    if args.adapters:  # rescoring an adapter this bench trained before: its statistics fitted again
        model, tokenizer, stats, run = rescore(args.adapters[args.seeds.index(seed)], paths["train"], seed)
    else:
        result = train(config, work / f"run{seed}")
        if args.keep:
            folder = f"run{seed}" if len(args.split_seed) == 1 else f"split{split_seed}-run{seed}"
            shutil.copytree(result.adapter_dir, Path(args.keep) / folder, dirs_exist_ok=True)
        saved = read_adapter_config(result.adapter_dir)["out_of_scope"]
        model, tokenizer = result.base.model, result.base.tokenizer
        stats = get_record(model, config.name).detector.stats
        run = {
            "train_rows": result.plan.rows, "steps": result.steps, "planned_steps": result.plan.total_steps,
            "train_seconds": round(result.train_seconds, 1), "fit_seconds": saved["fit_seconds"],
            "saved_score": saved["score"],
        }  # fmt: skip
    record = get_record(model, config.name)
    p = {}
    for part in ("val", "test", "unseen"):
        frame = load_data(paths[part], "classification").frame
        if part == "unseen":  # labels the adapter has never seen; only the scores count
            frame = frame.assign(label=record.labels[0])
        ds = tokenize(frame, "classification", tokenizer, config.max_length, record.labels)
        start = time.perf_counter()
        p[part] = predictions(model, config.name, ds, tokenizer.pad_token_id)
        if part == "test":
            forward_ms = 1000 * (time.perf_counter() - start) / len(ds)
    correct = np.array(p["test"].pred) == np.array(p["test"].gold)
    rows = {}
    for name in SCORES:
        start = time.perf_counter()
        on = {k: scores(name, v.features, v.logits, stats)[name].numpy() for k, v in p.items()}
        score_ms = 1000 * (time.perf_counter() - start) / sum(len(v.pred) for v in p.values())
        t = threshold_for(torch.from_numpy(on["val"]), args.false_rejection)
        rows[name] = measure(name, t, stats, p, correct) | {"score_ms_per_row": score_ms}
        if name == "msp":  # the old rule: the share asked for of the correctly classified validation rows
            right = np.array(p["val"].pred) == np.array(p["val"].gold)
            t_old = threshold_for(torch.from_numpy(on["val"][right]), args.false_rejection)
            rows["msp (before)"] = measure(name, t_old, stats, p, correct) | {"score_ms_per_row": score_ms}
    return {
        "seed": seed,
        "split_seed": split_seed,
        "held_out_intents": held,
        "rows": {k: len(v.pred) for k, v in p.items()},
        **run,
        "forward_ms_per_row": round(forward_ms, 3),
        "in_scope_accuracy": float(correct.mean()),
        "scores": rows,
    }


def rescore(folder: str, train_csv: Path, seed: int):
    """(model, tokenizer, statistics, run facts) of a saved bench adapter, its statistics fitted again on
    the seed's training rows as the end of training fits them (`calibration.fit`)."""
    for _ in range(720):  # a training run with --keep may still be making it: wait up to an hour
        if (Path(folder) / "out_of_scope.safetensors").is_file():
            break
        time.sleep(5)
    base, name = load_with_base(folder)
    record = get_record(base.model, name)
    ds = tokenize(load_data(train_csv, "classification").frame, "classification", base.tokenizer, 128, record.labels)
    start = time.perf_counter()
    stats = fit(base.model, name, ds, base.tokenizer.pad_token_id, len(record.labels), seed=seed)
    training = read_adapter_config(folder)["training"]
    run = {"train_rows": len(ds), "steps": training["step"], "planned_steps": training.get("total_steps"),
           "train_seconds": training.get("train_seconds"), "fit_seconds": round(time.perf_counter() - start, 2),
           "saved_score": read_adapter_config(folder)["out_of_scope"]["score"], "rescored": folder}  # fmt: skip
    return base.model, base.tokenizer, stats, run


def table(runs: list[dict]) -> pd.DataFrame:
    def cell(name: str, key: str, pct: bool = True) -> str:
        v = np.array([r["scores"][name][key] for r in runs])
        return f"{v.mean():.2%} ± {v.std():.2%}" if pct else f"{v.mean():.4f} ± {v.std():.4f}"

    return pd.DataFrame(
        [
            {
                "score": name,
                "AUROC": cell(name, "auroc", pct=False),
                "FPR@95TPR": cell(name, "fpr95"),
                "caught at 5% (test)": cell(name, "recall_at_5_test"),
                "unseen caught": cell(name, "recall"),
                "in-scope rejected": cell(name, "false_rejection"),
                "accuracy of accepted": cell(name, "accepted_accuracy"),
                "ms/row": f"{np.mean([r['scores'][name]['score_ms_per_row'] for r in runs]):.3f}",
            }
            for name in runs[0]["scores"]
        ]
    )


def setting(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read as JSON (a number, true, null) or else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or key not in {f.name for f in fields(TrainConfig)}:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE with KEY a TrainConfig setting")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=600, help="training seconds per seed (0: none)")
    ap.add_argument("--max-steps", type=int, default=0, help="optimizer steps per seed (0: the plan's)")
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: the default)")
    ap.add_argument("--per-intent", type=int, default=0, help="training rows per intent (0: all); see make_splits")
    ap.add_argument("--keep", help="a folder to copy each trained adapter to (run<seed>/, or split<s>-run<seed>/)")
    ap.add_argument("--adapters", nargs="+", help="adapters kept by --keep, one per seed: score them, no training")
    ap.add_argument("--fast", action="store_true", help="small samples, one seed, a 60 s budget: to try the script")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="one trained adapter per seed")
    ap.add_argument(
        "--split-seed", type=int, nargs="+", default=[42], help="the seeds choosing the held-out intents, a split each"
    )
    ap.add_argument("--unseen", type=int, default=10, help="intents held out of training")
    ap.add_argument(
        "--set", type=setting, nargs="+", default=[], metavar="KEY=VALUE",
        help="a training setting other than the default, for an ablation (pooling=mean epochs=8)",
    )  # fmt: skip
    ap.add_argument("--false-rejection", type=float, default=FALSE_REJECTION, help="in-scope share rejected")
    args = ap.parse_args()
    if args.adapters and len(args.split_seed) > 1:
        ap.error("--adapters rescores the adapters of one split: give one --split-seed")
    if args.fast:  # one seed unless told
        args.budget = min(60, args.budget or 60)
        args.seeds = args.seeds[:1] if "--seeds" not in sys.argv else args.seeds
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for split_seed, seed in [(s, seed) for s in args.split_seed for seed in args.seeds]:
            runs.append(one_seed(args, split_seed, seed, Path(tmp)))
            r = runs[-1]
            print(
                f"seed {seed}: {r['steps']} of {r['planned_steps']} steps in {r['train_seconds']:.0f} s, statistics "
                f"fitted in {r['fit_seconds']:.1f} s; in-scope test accuracy {r['in_scope_accuracy']:.2%}",
                flush=True,
            )
            print(table(runs[-1:]).to_string(index=False), flush=True)
    for split_seed in args.split_seed if len(args.split_seed) > 1 else []:
        print(f"\nSplit seed {split_seed}, mean ± std over seeds {args.seeds}:")
        print(table([r for r in runs if r["split_seed"] == split_seed]).to_string(index=False))
    print(
        f"\nMean ± std over seeds {args.seeds} and split seeds {args.split_seed}, threshold for "
        f"{args.false_rejection:.0%} false rejection on validation:"
    )
    print(table(runs).to_string(index=False))
    print(
        json.dumps(
            {
                "bench": "out_of_scope",
                "settings": dict(args.set),
                "budget_s": args.budget,
                "threads": torch.get_num_threads(),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
