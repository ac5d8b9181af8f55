"""Mixed-adapter batches, side by side in one run.

    python bench/mixed_batch.py [--repeats 15] [--no-generate]

MiniLM: 8 adapters in one batch of 32 (4 examples each) in one forward pass, against the same batch
through a single adapter. Target: mixed throughput >= 0.8 x single; mixed rows must equal each example
run alone. SmolLM2-135M (serving): 8 prompts, each with its own instruction adapter, generated in one
batch (24 new tokens each), against the same batch on one adapter and against one `generate` per
prompt, which is what serving without mixed batches comes to. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEVICE, device_name, interleaved, summary  # noqa: E402

from adapter_core import (  # noqa: E402
    AdapterConfig,
    adapter_parameters,
    add_adapter,
    format_prompt,
    load_base,
    use_adapter,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--no-generate", action="store_true", help="skip the SmolLM2 generation comparison")
    args = ap.parse_args()
    base = load_base("minilm", device=DEVICE)
    model = base.model
    names = [f"a{i}" for i in range(8)]
    g = torch.Generator().manual_seed(0)
    for name in names:
        add_adapter(model, name, AdapterConfig(bottleneck=64), labels=["x", "y"])
        with torch.no_grad():
            for p in adapter_parameters(model, name).values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    ids = torch.randint(1000, 20000, (32, args.length), generator=g).to(DEVICE)
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
    report = {
        "bench": "mixed_batch",
        "single_ms": single,
        "mixed_ms": mixed,
        "throughput_ratio": ratio,
        "max_abs_diff_vs_alone": max_diff,
        "device": device_name(),
        "threads": torch.get_num_threads(),
    }
    if not args.no_generate:
        report["generation"] = generation(max(3, args.repeats // 5))
    print(json.dumps(report))


def generation(repeats: int, new_tokens: int = 24) -> dict:
    base = load_base("smollm2-135m-instruct", device=DEVICE)
    model, tok = base.model, base.tokenizer
    names = [f"dept{i}" for i in range(8)]
    g = torch.Generator().manual_seed(1)
    for name in names:
        add_adapter(model, name, AdapterConfig(bottleneck=32), task="instruction")
        with torch.no_grad():
            for p in adapter_parameters(model, name).values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    prompts = [format_prompt(tok, f"Question {i}: where is order number {1000 + i}?") for i in range(8)]
    batch = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(DEVICE)
    rows = [tok(p, return_tensors="pt", add_special_tokens=False).to(DEVICE) for p in prompts]
    # min_new_tokens = max_new_tokens: every variant makes exactly the same number of tokens.
    fixed = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)

    def run(selection, inputs):
        with torch.inference_mode(), use_adapter(model, selection):
            model.generate(**inputs, **fixed)

    def one_by_one():
        for name, inputs in zip(names, rows, strict=True):
            run(name, inputs)

    samples = interleaved(
        {"single": lambda: run(names[0], batch), "mixed": lambda: run(names, batch), "one_by_one": one_by_one},
        repeats,
        warmup=1,
    )
    s = {k: summary(v) for k, v in samples.items()}
    tokens = 8 * new_tokens
    out = {
        "prompts": 8,
        "new_tokens_each": new_tokens,
        **{f"{k}_ms": v for k, v in s.items()},
        "tokens_per_s": {k: round(tokens / (v["median"] / 1e3), 1) for k, v in s.items()},
        "mixed_vs_single_throughput": round(s["single"]["median"] / s["mixed"]["median"], 3),
        "mixed_speedup_vs_one_by_one": round(s["one_by_one"]["median"] / s["mixed"]["median"], 2),
    }
    print(
        f"SmolLM2, 8 prompts x {new_tokens} new tokens: one adapter {s['single']['median']:.0f} ms, 8 adapters mixed "
        f"{s['mixed']['median']:.0f} ms ({out['mixed_vs_single_throughput']} x the throughput), one generate per prompt "
        f"{s['one_by_one']['median']:.0f} ms ({out['mixed_speedup_vs_one_by_one']} x slower than mixed)"
    )
    return out


if __name__ == "__main__":
    main()
