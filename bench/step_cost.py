"""Training-step cost: Houlsby adapter (r=64) against full fine-tuning, head-only and PEFT LoRA (r=8 on the
attention projections), same batch, side by side in one run.

    python bench/step_cost.py [--repeats 8] [--models minilm,smollm2-135m-instruct]

MiniLM: classification over mean-pooled states, batch 32 x 64 tokens. SmolLM2: the engine's
language-model loss (`response_loss`, every token labelled here, the LM head a chunk at a time), batch
8 x 256 tokens. Step = forward + backward + AdamW step. For a base with dropout (MiniLM), two
more rows train without the base's dropout: the adapter with the frozen base in eval mode (the engine's
default, `train_mode`), and full fine-tuning in eval mode, so that this pair compares the same
arithmetic. Peak memory per mode comes from a child process each (RSS on CPU; max_memory_allocated on
GPU).

Each mode also has a step profiled in each of five more interleaved rounds (`--gemm-rounds`), for the
time its linear layers' matrix multiplies take (median; the ratios are the median of each round's
ratio). The adapter's GEMMs against full fine-tuning's are this machine's floor for the step-time
ratio: the rest of a step (attention, softmax, norms, elementwise work) has no weights, costs the same
in both modes when both keep or both drop the base's dropout, and can only pull the ratio toward 1.
(The 2/3 floor assumes that a weight-gradient GEMM costs what a forward one does.) Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEVICE, device_name, in_child, interleaved, peak_of, peak_text, summary, sync  # noqa: E402

from adapter_core import AdapterConfig, add_adapter, load_base, train_mode, use_adapter  # noqa: E402
from adapter_core.engine.losses import response_loss  # noqa: E402

SHAPES = {"minilm": (32, 64), "smollm2-135m-instruct": (8, 256)}
LORA_TARGETS = {
    "bert": ["query", "key", "value", "attention.output.dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
MODES = ("full", "adapter", "lora", "head", "full_nodrop", "adapter_nodrop")


def build(base_name: str, mode: str, device: str, bf16: bool = False):
    base = load_base(base_name, device=device)
    model, hidden = base.model, base.model.config.hidden_size
    batch, length = SHAPES[base_name]
    decoder = base.family == "decoder"
    nodrop = mode.endswith("_nodrop")
    if nodrop and not has_dropout(model):
        return None  # the same as the mode with dropout
    mode = mode.removesuffix("_nodrop")
    ctx = nullcontext
    if mode == "adapter":
        add_adapter(model, "a", AdapterConfig(bottleneck=64), task="instruction")
        ctx = lambda: use_adapter(model, "a")  # noqa: E731
    elif mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS[model.config.model_type])
        )
    elif mode == "full":
        model.requires_grad_(True)
    else:
        model.requires_grad_(False)
    lm = model.get_base_model() if mode == "lora" else model  # PEFT's LoRA layers sit inside it
    head = None if decoder else nn.Linear(hidden, 77).to(device)
    params = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    if decoder and mode == "head":
        return None  # an LM has no separate head to train alone
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (batch, length), generator=g).to(device)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 77, (batch,), generator=g).to(device)
    model.train()
    if nodrop and mode == "adapter":
        train_mode(model, base_dropout=False)
    elif nodrop:
        model.eval()  # a base that trains, without dropout
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else nullcontext

    def step():
        with ctx(), autocast():
            if decoder:
                loss = response_loss(lm, ids, mask, ids)
            else:
                hidden_states = model(input_ids=ids, attention_mask=mask).last_hidden_state
                loss = nn.functional.cross_entropy(head(hidden_states.mean(1)), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


# A linear layer's GEMM. Attention's own products (bmm, or inside a fused kernel) carry no weight.
GEMMS = ("aten::mm", "aten::addmm")


def gemm_seconds(step) -> float:
    """Seconds one step spends in linear layers' GEMMs: their own CPU time, or their kernels' time on GPU."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    attr = "device_time_total" if DEVICE == "cuda" else "self_cpu_time_total"
    with profile(activities=activities) as prof:
        step()
        sync()
    return sum(getattr(e, attr) for e in prof.key_averages() if e.key in GEMMS) / 1e6


def round_ratio(rounds: list[dict[str, float]], mode: str, ref: str) -> float:
    """Median over rounds of each round's ratio: a burst of noise on a shared machine hits both sides of a
    ratio within a round alike."""
    return round(statistics.median(r[mode] / r[ref] for r in rounds), 3)


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()) or bool(
        getattr(model.config, "attention_dropout", 0)
    )


def measure_peak(base_name: str, mode: str, device: str, bf16: bool = False) -> dict | None:
    """Peak memory of three steps of one mode (run it in a fresh process: `common.in_child`)."""
    step = build(base_name, mode, device, bf16)
    if step is None:
        return None
    return peak_of(lambda: [step() for _ in range(3)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm,smollm2-135m-instruct")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--gemm-rounds", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPU runs)")
    args = ap.parse_args()
    device = DEVICE
    report = {
        "bench": "step_cost",
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "bf16": args.bf16,
        "models": {},
    }
    for base_name in args.models.split(","):
        steps = {m: s for m in MODES if (s := build(base_name, m, device, args.bf16)) is not None}
        samples = interleaved(steps, args.repeats)
        rows = {m: summary(samples[m]) for m in steps}
        gemm_rounds = [{m: gemm_seconds(s) for m, s in steps.items()} for _ in range(args.gemm_rounds)]
        gemm = {m: statistics.median(r[m] for r in gemm_rounds) for m in steps}
        full = rows["full"]["median"]
        batch, length = SHAPES[base_name]
        for m in rows:
            rows[m]["vs_full"] = round(rows[m]["median"] / full, 3)
            if m == "adapter_nodrop":
                rows[m]["vs_full_nodrop"] = round(rows[m]["median"] / rows["full_nodrop"]["median"], 3)
                rows[m]["gemm_vs_full_nodrop"] = round_ratio(gemm_rounds, m, "full_nodrop")
            rows[m]["gemm_ms"] = round(gemm[m] * 1e3, 1)
            rows[m]["gemm_vs_full"] = round_ratio(gemm_rounds, m, "full")
            rows[m]["tokens_per_s"] = round(batch * length / (rows[m]["median"] / 1e3), 1)
            if not args.no_memory:
                rows[m].update(
                    in_child("step_cost", f"measure_peak({base_name!r}, {m!r}, {device!r}, {args.bf16!r})") or {}
                )
        report["models"][base_name] = {"batch": SHAPES[base_name], "rows": rows}
        for m, r in rows.items():
            print(
                f"{base_name:>22} {m:>14}: {r['median']:8.1f} ms/step ({r['min']:.0f}-{r['max']:.0f}), "
                f"{r['vs_full']:.3f} x full, {r['tokens_per_s']:.0f} tokens/s, "
                f"GEMMs {r['gemm_ms']:.0f} ms = {r['gemm_vs_full']:.3f} x full's{peak_text(r)}",
                flush=True,
            )
        del steps
    print(json.dumps(report))


if __name__ == "__main__":
    main()
