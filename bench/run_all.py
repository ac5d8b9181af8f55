"""Run every benchmark in turn (`make bench`); each prints its figures last as one JSON line.

    python bench/run_all.py [--quick | --gpu [--dry-run]]

--quick trims repeats and budgets to check the scripts, not to quote numbers. --gpu is issue 6's GPU
check in one go (training step cost under bf16 with SmolLM2 tokens/s, inference overhead, mixed
batches, the response-only loss's time and memory, and the server under 32 clients, whose models stay
on the CPU for now), and training in ZeroGPU slices with real CUDA in the workers; each script picks CUDA
by itself. GPU time is rare, so `--gpu --dry-run` runs the same scripts with tiny settings on whatever is
here (the CPU) first, to prove the script before a GPU is lent. Results go to bench/results.jsonl; copy
the figures you quote into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "inference_overhead": ([], ["--repeats", "3"]),
    "switching": ([], ["--repeats", "5"]),
    "mixed_batch": ([], ["--repeats", "3"]),
    "step_cost": ([], ["--repeats", "2", "--gemm-rounds", "1", "--models", "minilm", "--no-memory"]),
    "response_loss": ([], ["--repeats", "1", "--batches", "2", "--no-memory"]),
    "banking77": ([], ["--fast"]),
    "out_of_scope": ([], ["--fast"]),
    "sweep": ([], ["--fast"]),
    "adapterhub": ([], ["--fast", "--epochs", "1"]),
    "adapterhub_instruction": ([], ["--steps", "2"]),
    "adapterhub_roundtrip": ([], []),
    "defaults": (["--quick"], ["--datasets", "routing"]),
    "answer_scores": (["--threads", "1"], ["--fast", "--threads", "1"]),
    "serve": ([], ["--fast"]),
    "zerogpu_slices": (["--seeds", "0", "1", "2"], ["--fast"]),
}
GPU = {  # in the order they run: a GPU lease is short, so the figures most asked for come first
    "zerogpu_slices": ["--gpu", "--seeds", "0"],
    "step_cost": ["--bf16", "--repeats", "5", "--gemm-rounds", "1"],
    "inference_overhead": [],
    "mixed_batch": ["--repeats", "5"],
    "response_loss": ["--repeats", "2", "--batches", "4"],
    "serve": ["--rounds", "1"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--gpu", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="with --gpu: every GPU script, tiny, on this machine")
    ap.add_argument("--only", help="comma-separated benchmark names")
    ap.add_argument(
        "--timeout", type=float, help="seconds each script may run before it is stopped and skipped (--gpu: 75)"
    )
    args = ap.parse_args()
    if args.dry_run and not args.gpu:
        ap.error("--dry-run goes with --gpu")
    if args.gpu and not args.dry_run and args.timeout is None:
        args.timeout = 75.0  # six scripts inside a GPU lease of about 8 minutes
    names = args.only.split(",") if args.only else list(GPU if args.gpu else BENCHES)
    failed = []
    with open(HERE / ("dry-run.jsonl" if args.dry_run else "results.jsonl"), "a") as log:
        for name in names:
            full, quick = BENCHES[name]
            extra = (
                GPU.get(name, full) if args.gpu and not args.dry_run else quick if args.quick or args.dry_run else full
            )
            cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
            print(f"== {name}", flush=True)
            began = time.perf_counter()
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired as e:
                print(
                    f"{name}: stopped after {args.timeout:.0f} s\n{_text(e.stdout)[-2000:]}\n{_text(e.stderr)[-2000:]}"
                )
                failed.append(name)
                continue
            if out.returncode != 0:  # the others still run: one broken script must not cost a rare GPU's other rows
                print(out.stdout[-1500:], out.stderr[-3000:], sep="\n")
                failed.append(name)
                continue
            lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
            print("\n".join(lines[-8:-1]))
            print(f"({time.perf_counter() - began:.0f} s)", flush=True)
            log.write(json.dumps(json.loads(lines[-1])) + "\n")
            log.flush()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else b or ""


if __name__ == "__main__":
    main()
