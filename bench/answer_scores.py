"""Instruction answer scores, measured (issue 27): SmolLM2 Quick look adapters against the bare base.

    python bench/answer_scores.py [--seeds 0 1 2] [--threads N] [--fast]

Each seed trains an Orders adapter the way the studio's Start does with the Quick look preset and every
sized setting on auto (`studio.settings.train_config`: the form's defaults, the seed the only change) on
`sample_data/orders_sft.csv` less a held-out test split (the 10%, seed 0, of `bench/defaults.py`; no
run trains on it). The held-out pairs are then answered by the adapter and by the bare base in the same
mixed batch and scored (`adapter_core.engine.answer_scores.score_file`: greedy, its default settings), so
both columns come from one run. The runs' own end-of-run scores and evaluation samples are off
(`score_pairs` 0, `sample_prompts` 0): they answer validation pairs, which would only add minutes; the
training is the same.

Prints each score as mean ± std over the seeds for the adapter and the base, the adapter's ratio to the
base and the difference; one JSON line last. --fast: two seeds of 3 steps, 4 pairs, 16 new tokens (to
try the script, not to quote). On a shared 2-core machine pass --threads 1: two threads contending with
other work made its decoding up to 15 times slower here (each step waits for both threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # this checkout's product (the studio is not installed)
from defaults import make_split  # noqa: E402

from adapter_core.engine import PRESETS  # noqa: E402
from adapter_core.engine.answer_scores import BASE, SCORE_KEYS, SCORE_NAMES, ScoreSettings, score_file  # noqa: E402
from adapter_core.engine.train import train  # noqa: E402
from studio.settings import train_config  # noqa: E402

BASE_MODEL = "smollm2-135m-instruct"
FORMATS = {"chrf": ".1f"}


def run(seed: int, train_path: Path, test_path: Path, work: Path, fast: bool) -> dict:
    """One seed: the studio's Quick look run, then the held-out pairs answered by adapter and base."""
    source = {"path": str(train_path), "name": train_path.name}
    settings = {"preset": PRESETS["Quick look"].label, "auto": True, "seed": seed}
    config = train_config(BASE_MODEL, source, "instruction", {}, f"orders-seed{seed}", settings)
    config.score_pairs = config.sample_prompts = 0
    if fast:
        config.max_steps = 3
    t0 = time.perf_counter()
    result = train(config, work / config.name)
    trained = time.perf_counter() - t0
    score_settings = ScoreSettings(max_new_tokens=16, max_pairs=4) if fast else ScoreSettings()
    t0 = time.perf_counter()
    scored = score_file(result.base, [config.name, None], test_path, score_settings)
    row = {
        "seed": seed,
        "steps": result.steps,
        "batch_size": result.plan.batch_size,
        "val_loss": round(result.metrics["val_loss"], 4),
        "train_seconds": round(result.train_seconds, 1),
        "run_seconds": round(trained, 1),
        "score_seconds": round(time.perf_counter() - t0, 1),
        "settings": scored["settings"],
        **{s["model"]: {k: s[k] for k in SCORE_KEYS} for s in scored["scores"]},
        "sample": {k: v[0][:200] for k, v in scored["answers"].items()},
    }
    print(json.dumps(row), flush=True)
    return row


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per score: adapter and base mean and std over the seeds, adapter / base and adapter − base."""
    out = {}
    for key in SCORE_KEYS:
        (a, a_sd), (b, b_sd) = (mean_std([r[m][key] for r in rows]) for m in ("adapter", "base"))
        out[key] = {
            "adapter": round(a, 4), "adapter_std": round(a_sd, 4), "base": round(b, 4), "base_std": round(b_sd, 4),
            "ratio": round(a / b, 2) if b else None, "difference": round(a - b, 4),
        }  # fmt: skip
    return out


def table(summary: dict[str, dict], seeds: int) -> str:
    lines = [
        f"| score | adapter (mean ± std, {seeds} seeds) | {BASE} | adapter / base | adapter − base |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, s in summary.items():
        f = FORMATS.get(key, ".3f")  # chrF is 0-100; the others 0-1
        ratio = "–" if s["ratio"] is None else f"{s['ratio']:.2f}"
        lines.append(
            f"| {SCORE_NAMES[key]} | {s['adapter']:{f}} ± {s['adapter_std']:{f}} | {s['base']:{f}} ± "
            f"{s['base_std']:{f}} | {ratio} | {s['difference']:+{f}} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--fast", action="store_true", help="two seeds of 3 steps, 4 pairs, 16 tokens: a trial")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = args.seeds[:2] if args.fast else args.seeds
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_path, test_path = make_split("orders", work)
        rows = [run(seed, train_path, test_path, work, args.fast) for seed in seeds]
    summary = summarise(rows)
    print()
    print(f"Held-out pairs: {rows[0]['settings']['pairs']} ({rows[0]['settings']['decoding']}, "
          f"at most {rows[0]['settings']['max_new_tokens']} new tokens)")  # fmt: skip
    print(table(summary, len(rows)))
    print(json.dumps({
        "bench": "answer_scores", "threads": torch.get_num_threads(), "fast": args.fast,
        "wall_seconds": round(time.perf_counter() - start, 1), "summary": summary, "rows": rows,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
