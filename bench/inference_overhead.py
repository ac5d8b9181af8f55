"""Forward-pass overhead of a Houlsby adapter against the plain base, measured side by side.

    python bench/inference_overhead.py [--bottleneck 64] [--repeats 15]

Interleaves base and adapter passes so machine noise hits both alike, and prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEVICE, device_name, timed  # noqa: E402

from adapter_core import AdapterConfig, add_adapter, load_base, use_adapter  # noqa: E402


def measure(base, batch: int, length: int, repeats: int) -> dict:
    model = base.model
    ids = torch.randint(1000, 20000, (batch, length), device=DEVICE)
    mask = torch.ones_like(ids)

    def plain():
        model(input_ids=ids, attention_mask=mask)

    def adapted():
        with use_adapter(model, "a"):
            model(input_ids=ids, attention_mask=mask)

    with torch.inference_mode():
        for _ in range(3):
            plain(), adapted()
        base_t, adapter_t = [], []
        for _ in range(repeats):  # interleaved pairs
            base_t.append(timed(plain))
            adapter_t.append(timed(adapted))
    mb, ma = statistics.median(base_t), statistics.median(adapter_t)
    return {
        "batch": batch,
        "length": length,
        "base_ms": round(mb * 1e3, 2),
        "adapter_ms": round(ma * 1e3, 2),
        "overhead_pct": round(100 * (ma / mb - 1), 2),
        "spread_base_ms": [round(min(base_t) * 1e3, 2), round(max(base_t) * 1e3, 2)],
        "spread_adapter_ms": [round(min(adapter_t) * 1e3, 2), round(max(adapter_t) * 1e3, 2)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="minilm")
    ap.add_argument("--bottleneck", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    base = load_base(args.base, device=DEVICE)
    add_adapter(base.model, "a", AdapterConfig(bottleneck=args.bottleneck), labels=["x", "y"])
    rows = [measure(base, 32, 128, args.repeats), measure(base, 1, 128, args.repeats * 4)]
    for r in rows:
        print(
            f"batch {r['batch']:>2} x {r['length']}: base {r['base_ms']} ms, adapter {r['adapter_ms']} ms, "
            f"overhead {r['overhead_pct']}%"
        )
    print(
        json.dumps(
            {
                "bench": "inference_overhead",
                "base": args.base,
                "bottleneck": args.bottleneck,
                "device": device_name(),
                "threads": torch.get_num_threads(),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
