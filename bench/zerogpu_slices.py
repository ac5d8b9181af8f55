"""What training in ZeroGPU slices costs (issue 24): sliced against unsliced wall time, side by side in
one process, and the bytes that cross into and out of each slice.

    python bench/zerogpu_slices.py [--fast] [--seeds 0 1 2] [--tasks classification,instruction]

The sliced runs go through the real `spaces` package under the test suite's emulation
(tests/zerogpu_emulation.py): each slice is one `@spaces.GPU` call that forks a worker (reused while
idle) and pickles the run's state in and out; only the scheduler's HTTP and the CUDA packing are
replaced, so on this CPU the workers train on the CPU. Slices are called back to back here: the
studio's drive from visitor requests adds its own gaps, which the studio tests measure (share of a
run's wall time spent inside leases). With a GPU (`--gpu`, on a machine with CUDA and a CUDA build of
torch) the packing is the real one too and the workers train on the GPU. The unsliced baseline runs in
a child process without `spaces`, warmed by a one-step run of its own: a Space's main process takes no
training step (the emulation fails one: on a CUDA build it would start CUDA there, and under `spaces`'
patching no kernel runs there anyway). The sliced run's timing includes its worker's start and base
load, as on a Space.
Each row also gives the GPU seconds the run's leases used and asked for: the quota a visitor spends.

Defaults: MiniLM on the routing sample, every setting auto; SmolLM2-135M on house_style_sft.csv, every
setting auto. --fast caps both at a few steps (to check the script, not to quote numbers). Prints one
JSON line last.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

RUNS = {
    "classification": dict(base="minilm", data=str(ROOT / "sample_data/support_routing.csv"), name="routing"),
    "instruction": dict(
        base="smollm2-135m-instruct",
        data=str(ROOT / "sample_data/house_style_sft.csv"),
        name="style",
        task="instruction",
    ),
}


def plain(task: str, seed: int, fast: bool, out: Path) -> None:
    """The unsliced baseline in this process, with no `spaces` (the bench's child): warm, then time."""
    from adapter_core.engine.train import TrainConfig, train

    settings = _settings(task, seed, fast)
    train(TrainConfig.from_dict({**settings, "max_steps": 1}), out.with_name(out.name + "-warm"))
    began = time.perf_counter()
    result = train(TrainConfig.from_dict(settings), out)
    print(json.dumps({"seconds": time.perf_counter() - began, "steps": result.steps, "metrics": result.metrics}))


def _settings(task: str, seed: int, fast: bool) -> dict:
    return {**RUNS[task], "seed": seed, **({"max_steps": 6} if fast else {})}


def _in_child(task: str, seed: int, fast: bool, out: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--plain",
        task,
        "--seeds",
        str(seed),
        "--out",
        str(out),
        *(["--fast"] if fast else []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the unsliced run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _metric(metrics: dict | None) -> float | None:
    metrics = metrics or {}
    value = metrics.get("accuracy", metrics.get("val_loss"))
    return None if value is None else round(float(value), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--gpu", action="store_true", help="real CUDA in the workers (a GPU machine)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--tasks", default="classification,instruction")
    ap.add_argument("--plain", choices=sorted(RUNS), help=argparse.SUPPRESS)  # the baseline's child
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain:
        return plain(args.plain, args.seeds[0], args.fast, args.out)
    import zerogpu_emulation

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "leases.jsonl"
        zerogpu_emulation.install(ledger, real_cuda=args.gpu)
        import spaces
        from safetensors.torch import load_file

        from adapter_core.engine.slices import run_slice
        from adapter_core.engine.train import TrainConfig, train

        sizes: list[tuple[int, int]] = []

        def sliced(spec):
            result = gpu_slice(spec)
            sizes.append((len(pickle.dumps(spec)), len(pickle.dumps(result))))
            return result

        gpu_slice = spaces.GPU(duration=lambda spec: spec.lease)(run_slice)
        rows = []
        for task in args.tasks.split(","):
            for seed in args.seeds:
                settings = _settings(task, seed, args.fast)
                if args.gpu:  # the parent on the CPU (it takes no step), as the studio sets it on ZeroGPU
                    settings["device"] = "cpu"
                config = TrainConfig.from_dict(settings)
                times, weights, metrics, leased = {}, {}, {}, []
                modes = ("unsliced", "sliced") if seed % 2 == 0 else ("sliced", "unsliced")  # alternate the order
                for mode in modes:  # one after the other, same settings
                    out = Path(tmp) / f"{task}-{seed}-{mode}"
                    if mode == "unsliced":
                        child = _in_child(task, seed, args.fast, out)
                        times[mode], metrics[mode] = child["seconds"], child["metrics"]
                    else:
                        began = time.perf_counter()
                        result = train(config, out, lease=sliced if mode == "sliced" else None)
                        times[mode], metrics[mode] = time.perf_counter() - began, result.metrics
                        if mode == "sliced":
                            leased = [
                                x for x in zerogpu_emulation.leases(ledger) if x["time"] >= time.time() - times[mode]
                            ]
                    weights[mode] = load_file(out / "adapter" / "adapter_model.safetensors")
                diff = max(
                    float((weights["sliced"][k] - weights["unsliced"][k]).abs().max()) for k in weights["sliced"]
                )
                row = {
                    "task": task,
                    "seed": seed,
                    "steps": result.steps,
                    "unsliced_s": round(times["unsliced"], 1),
                    "sliced_s": round(times["sliced"], 1),
                    "ratio": round(times["sliced"] / times["unsliced"], 3),
                    "max_weight_diff": diff,
                    "val_unsliced": _metric(metrics["unsliced"]),
                    "val_sliced": _metric(metrics["sliced"]),
                    "slices": len(sizes),
                    "lease_s_used": round(sum(x["seconds"] for x in leased), 1),
                    "lease_s_asked": round(sum(x["requested"] for x in leased), 1),
                    "leases_aborted": sum(x["aborted"] for x in leased),
                    "mb_in_per_slice": round(sum(s for s, _ in sizes) / max(len(sizes), 1) / 1e6, 2),
                    "mb_out_per_slice": round(sum(r for _, r in sizes) / max(len(sizes), 1) / 1e6, 2),
                }
                sizes.clear()
                print(row, flush=True)
                rows.append(row)
        device = _gpu_name() if args.gpu else "cpu"
    print(json.dumps({"bench": "zerogpu_slices", "device": device, "rows": rows}))


def _gpu_name() -> str:
    """The card, read without CUDA in this process (spaces' patching names an emulated one here)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
    except OSError:
        return "cuda"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "cuda"


if __name__ == "__main__":
    main()
