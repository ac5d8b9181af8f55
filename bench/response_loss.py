"""Instruction tuning with the LM head on response tokens only, against the model's own loss (logits for
every token), on real instruction batches, side by side in one run.

    python bench/response_loss.py [--repeats 5] [--batches 6]

SmolLM2-135M with a Houlsby r=64 adapter, batch 8, on the three instruction files in sample_data/
(about half of each example's tokens are prompt and carry no loss). A step is forward, backward and
AdamW. A third row runs the head on the response tokens with their logits whole (the engine's loss
before `lm_head_loss` took them a chunk at a time). The losses are checked to agree on every timed
batch; peak memory per mode comes from a fresh process. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEVICE, device_name, in_child, interleaved, peak_of, peak_text, summary  # noqa: E402

from adapter_core import AdapterConfig, add_adapter, load_base  # noqa: E402
from adapter_core.engine.batches import IGNORE, LengthGroupedBatches, collate, tokenize  # noqa: E402
from adapter_core.engine.losses import labelled_hidden, response_loss  # noqa: E402
from adapter_core.selection import use_adapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = ("orders_sft.csv", "billing_sft.csv", "tech_support_sft.csv")


def models_own_loss(model, input_ids, attention_mask, labels) -> torch.Tensor:
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def response_only_whole_logits(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """The engine's loss before its chunked head (`lm_head_loss`): every labelled token's logits at once."""
    hidden, targets = labelled_hidden(model, input_ids, attention_mask, labels)
    return F.cross_entropy(model.get_output_embeddings()(hidden).float(), targets)


LOSSES = {
    "models_own_loss": models_own_loss,
    "response_whole": response_only_whole_logits,
    "response_only": response_loss,
}


def setup(n_batches: int, batch_size: int = 8):
    base = load_base("smollm2-135m-instruct", device=DEVICE)
    model = base.model
    add_adapter(model, "a", AdapterConfig(bottleneck=64), task="instruction")
    frame = pd.concat([pd.read_csv(ROOT / "sample_data" / f) for f in FILES], ignore_index=True)
    ds = tokenize(frame, "instruction", base.tokenizer, 512, None)
    pad = base.tokenizer.pad_token_id or 0
    order = list(LengthGroupedBatches(ds["length"], batch_size, seed=0))[:n_batches]
    batches = [{k: v.to(DEVICE) for k, v in collate([ds[i] for i in b], pad).items()} for b in order]
    return model, batches


def stepper(model, batches, loss_fn):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def run():  # one step on each batch in turn
        for b in batches:
            with use_adapter(model, "a"):
                loss = loss_fn(model, b["input_ids"], b["attention_mask"], b["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return run


def measure_peak(mode: str, n_batches: int) -> dict:
    model, batches = setup(n_batches)
    return peak_of(stepper(model, batches, LOSSES[mode]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    model, batches = setup(args.batches)

    model.eval()  # the same function on both sides: no dropout
    with torch.no_grad(), use_adapter(model, "a"):
        reference = [models_own_loss(model, **b) for b in batches]
        diff = max(
            abs(float(o - f(model, **b))) for o, b in zip(reference, batches, strict=True) for f in LOSSES.values()
        )
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    labelled = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)

    # Every round restores the adapter's starting weights, so both losses train from the same point.
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def fresh(mode):
        run = stepper(model, batches, LOSSES[mode])

        def go():
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in start:
                        p.copy_(start[n])
            run()

        return go

    samples = interleaved({m: fresh(m) for m in LOSSES}, args.repeats, warmup=1)
    rows = {m: summary(samples[m]) for m in LOSSES}
    own = rows["models_own_loss"]["median"]
    for m, r in rows.items():
        r["vs_models_own"] = round(r["median"] / own, 3)
        r["tokens_per_s"] = round(tokens / (r["median"] / 1e3), 1)
        if not args.no_memory:
            r.update(in_child("response_loss", f"measure_peak({m!r}, {args.batches})"))
        print(
            f"{m:>16}: {r['median']:8.1f} ms for {len(batches)} steps ({r['min']:.0f}-{r['max']:.0f}), "
            f"{r['vs_models_own']:.3f} x the model's own loss, {r['tokens_per_s']:.0f} tokens/s{peak_text(r)}",
            flush=True,
        )
    print(f"labelled tokens: {labelled / tokens:.1%} of {tokens}; largest loss difference {diff:.2e}")
    report = {
        "bench": "response_loss",
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "batches": [list(b["input_ids"].shape) for b in batches],
        "labelled_fraction": round(labelled / tokens, 3),
        "max_loss_difference": diff,
        "rows": rows,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
