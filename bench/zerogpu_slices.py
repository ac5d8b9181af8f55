"""What training in ZeroGPU slices costs (issue 24): sliced against unsliced wall time, side by side in
one process, and the bytes that cross into and out of each slice.

    python bench/zerogpu_slices.py [--fast] [--seeds 0 1 2] [--tasks classification,instruction]

The sliced runs go through the real `spaces` package under the test suite's emulation
(tests/zerogpu_emulation.py): each slice is one `@spaces.GPU` call that forks a worker (reused while
idle) and pickles the run's state in and out; only the scheduler's HTTP and the CUDA packing are
replaced, so on this CPU the workers train on the CPU. Slices are called back to back here: the
studio's drive from visitor requests adds its own gaps, which the studio tests measure (share of a
run's wall time spent inside leases). With a GPU (`--gpu`, on a machine with CUDA and a CUDA build of
torch) the packing is the real one too and the workers train on the GPU.

Defaults: MiniLM on the routing sample, every setting auto; SmolLM2-135M on house_style_sft.csv, every
setting auto. --fast caps both at a few steps (to check the script, not to quote numbers). Prints one
JSON line last.
"""

from __future__ import annotations

import argparse
import json
import pickle
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--gpu", action="store_true", help="real CUDA in the workers (a GPU machine)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--tasks", default="classification,instruction")
    args = ap.parse_args()
    import zerogpu_emulation

    with tempfile.TemporaryDirectory() as tmp:
        zerogpu_emulation.install(Path(tmp) / "leases.jsonl", real_cuda=args.gpu)
        import spaces
        import torch
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
                settings = {**RUNS[task], "seed": seed, **({"max_steps": 6} if args.fast else {})}
                config = TrainConfig.from_dict(settings)
                # Warm this process's caches (the base's files, the data's tokenization) for both modes alike;
                # the sliced run's fresh worker still loads its base inside its first slice, as on a Space.
                train(TrainConfig.from_dict({**settings, "max_steps": 1}), Path(tmp) / f"warm-{task}-{seed}")
                times, weights = {}, {}
                modes = ("unsliced", "sliced") if seed % 2 == 0 else ("sliced", "unsliced")  # alternate the order
                for mode in modes:  # one after the other, same process and settings
                    out = Path(tmp) / f"{task}-{seed}-{mode}"
                    began = time.perf_counter()
                    result = train(config, out, lease=sliced if mode == "sliced" else None)
                    times[mode] = time.perf_counter() - began
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
                    "slices": len(sizes),
                    "mb_in_per_slice": round(sum(s for s, _ in sizes) / max(len(sizes), 1) / 1e6, 2),
                    "mb_out_per_slice": round(sum(r for _, r in sizes) / max(len(sizes), 1) / 1e6, 2),
                }
                sizes.clear()
                print(row, flush=True)
                rows.append(row)
        device = torch.cuda.get_device_name() if args.gpu else "cpu"
    print(json.dumps({"bench": "zerogpu_slices", "device": device, "rows": rows}))


if __name__ == "__main__":
    main()
