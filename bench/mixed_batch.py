"""Mixed-adapter batches on MiniLM: 8 adapters in one batch of 32 (4 examples each) in one forward pass,
against the same batch through a single adapter, side by side in one run.

    python bench/mixed_batch.py [--repeats 15]

Target: mixed throughput >= 0.8 x single. Also checks that mixed rows equal each example run alone.
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, summary  # noqa: E402

from adapter_core import AdapterConfig, adapter_parameters, add_adapter, load_base, use_adapter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--length", type=int, default=64)
    args = ap.parse_args()
    base = load_base("minilm")
    model = base.model
    names = [f"a{i}" for i in range(8)]
    g = torch.Generator().manual_seed(0)
    for name in names:
        add_adapter(model, name, AdapterConfig(bottleneck=64), labels=["x", "y"])
        with torch.no_grad():
            for p in adapter_parameters(model, name).values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    ids = torch.randint(1000, 20000, (32, args.length), generator=g)
    mask = torch.ones_like(ids)
    choice = [names[i % 8] for i in range(32)]

    def run(selection):
        with torch.inference_mode(), use_adapter(model, selection):
            return model(input_ids=ids, attention_mask=mask).last_hidden_state

    samples = interleaved({"single": lambda: run("a0"), "mixed": lambda: run(choice)}, args.repeats)
    single, mixed = summary(samples["single"]), summary(samples["mixed"])
    ratio = round(single["median"] / mixed["median"], 3)
    together = run(choice)
    alone = torch.cat([run(n)[i : i + 1] for i, n in enumerate(choice)])
    max_diff = (together - alone).abs().max().item()
    print(
        f"batch 32 x {args.length}: single adapter {single['median']:.1f} ms, 8 adapters mixed "
        f"{mixed['median']:.1f} ms -> throughput ratio {ratio} (target >= 0.8); max |mixed - alone| {max_diff:.2e}"
    )
    print(
        json.dumps(
            {
                "bench": "mixed_batch",
                "single_ms": single,
                "mixed_ms": mixed,
                "throughput_ratio": ratio,
                "max_abs_diff_vs_alone": max_diff,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
