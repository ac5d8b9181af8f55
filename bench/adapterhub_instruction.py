"""Against AdapterHub on instruction tuning: SmolLM2-135M with a Houlsby adapter (bottleneck 64, swish,
W_up at zero), trained on the same token batches by `adapters` 1.3.0 and by Adapter Studio.

    python bench/adapterhub_instruction.py [--steps 30] [--seed 0]

The three instruction files of sample_data/ are tokenised once, by our engine (chat template, labels on
the response only), and cut into a 10% validation split and length-grouped batches of 8. Every side
trains on exactly these batches in the same loop (AdamW at the engine's default learning rate, weight
decay 0.01, 6% warmup then linear decay, clipping at 1.0) and only the model differs:

- adapterhub: `adapters.init` on the transformers 4.57.6 model, `DoubleSeqBnConfig`, the model's own loss;
- ours: `add_adapter` and the engine's loss (`engine/losses.py`: the LM head on response tokens only);
- ours_models_own_loss: our adapters with the model's own loss, to show where a difference comes from.

Each side runs in its own process, one after the other; AdapterHub's runs in the venv of
`adapterhub.py`. Both start at the identity, so their validation losses before training must agree:
that checks the two sides load the same model. Prints token throughput ratios and the validation loss
before and after, as one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FILES = ("orders_sft.csv", "billing_sft.csv", "tech_support_sft.csv")

# Run by every side, with its BUILD code in front: `model` (adapter added, only it trainable) and
# `loss_fn(batch)`. Nothing else differs.
LOOP = r"""
import json, sys, time
import torch
from transformers import get_linear_schedule_with_warmup

data = json.loads(open(sys.argv[1]).read())
pad = data["pad_id"]

def collate(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}

train = [collate(b) for b in data["train"]]
val = [collate(b) for b in data["val"]]

@torch.no_grad()
def val_loss():
    model.eval()
    total = count = 0
    for b in val:
        n = int((b["labels"][:, 1:] != -100).sum())
        total, count = total + float(loss_fn(b)) * n, count + n
    model.train()
    return total / count

params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=data["lr"], weight_decay=0.01)
sched = get_linear_schedule_with_warmup(opt, int(0.06 * len(train)), len(train))
before = val_loss()
model.train()
start = time.perf_counter()
for b in train:
    loss_fn(b).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step(); sched.step(); opt.zero_grad()
seconds = time.perf_counter() - start
tokens = sum(int(b["attention_mask"].sum()) for b in train)
print(json.dumps({"val_loss_before": before, "val_loss_after": val_loss(), "train_seconds": seconds,
                  "tokens_per_sec": tokens / seconds, "steps": len(train),
                  "trainable_params": sum(p.numel() for p in params)}))
"""

THEIRS = r"""
import sys, torch
import adapters
from adapters import DoubleSeqBnConfig
from transformers import AutoConfig, AutoModelForCausalLM
path, seed = sys.argv[2], int(sys.argv[3])
config = AutoConfig.from_pretrained(path)
# The cached model was saved by transformers 5, which keeps RoPE's base in `rope_parameters`; 4.57 reads
# `rope_theta` and would fall back to 10,000 without this.
if getattr(config, "rope_parameters", None):
    config.rope_theta = config.rope_parameters["rope_theta"]
model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
adapters.init(model)
torch.manual_seed(seed)
# 576 / 9 = bottleneck 64; "mam_adapter" init: Kaiming-uniform W_down, W_up and biases at zero.
model.add_adapter("a", config=DoubleSeqBnConfig(reduction_factor=9, non_linearity="swish", init_weights="mam_adapter"))
model.train_adapter("a")
loss_fn = lambda b: model(**b).loss
"""

OURS = r"""
import sys, torch
from adapter_core import AdapterConfig, add_adapter, load_base, use_adapter
from adapter_core.engine.losses import task_loss
seed, own_loss = int(sys.argv[3]), sys.argv[4] == "1"
model = load_base("smollm2-135m-instruct").model
torch.manual_seed(seed)
add_adapter(model, "a", AdapterConfig(bottleneck=64, activation="swish", init="kaiming"), task="instruction")

def loss_fn(b):
    if own_loss:
        with use_adapter(model, "a"):
            return model(**b).loss
    return task_loss(model, "a", "instruction", b)[0]
"""


def prepare(work: Path, steps: int, seed: int) -> tuple[Path, Path, dict]:
    """Tokenised batches as JSON (and the cached model's folder), made by our engine for every side."""
    from adapter_core import load_base
    from adapter_core.engine.batches import LengthGroupedBatches, drop_unanswered, tokenize
    from adapter_core.engine.data import load_data, split
    from adapter_core.engine.train import TrainConfig
    from adapter_core.paths import model_cache

    base = load_base("smollm2-135m-instruct")
    model_dir = model_cache() / "smollm2-135m-instruct"
    rows = work / "instructions.csv"
    pd.concat([pd.read_csv(ROOT / "sample_data" / f) for f in FILES]).to_csv(rows, index=False)
    d = TrainConfig()
    train_df, val_df = split(load_data(rows, "instruction"), d.val_fraction, seed)
    encode = lambda df: drop_unanswered(tokenize(df, "instruction", base.tokenizer, d.max_length, None))  # noqa: E731
    train_ds, val_ds = encode(train_df), encode(val_df)
    sampler = LengthGroupedBatches(train_ds["length"], 8, seed)
    order = []
    while len(order) < steps:  # as many epochs as the steps need
        sampler.set_epoch(len(order) // len(sampler))
        order += list(sampler)
    pick = lambda ds, idx: [{"input_ids": ds[i]["input_ids"], "labels": ds[i]["labels"]} for i in idx]  # noqa: E731
    val_idx = sorted(range(len(val_ds)), key=lambda i: val_ds[i]["length"])
    data = {
        "pad_id": base.tokenizer.pad_token_id,
        "lr": 2e-3,  # the rate of every recorded run
        "train": [pick(train_ds, b) for b in order[:steps]],
        "val": [pick(val_ds, val_idx[i : i + 8]) for i in range(0, len(val_idx), 8)],
    }
    path = work / "batches.json"
    path.write_text(json.dumps(data))
    return path, model_dir, {"train_rows": len(train_ds), "val_rows": len(val_ds)}


def side(python: str, build: str, *args: str) -> dict:
    out = subprocess.run([python, "-c", build + LOOP, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from adapterhub import ensure_venv

    their_python = str(ensure_venv())
    with tempfile.TemporaryDirectory() as tmp:
        data, model_dir, sizes = prepare(Path(tmp), args.steps, args.seed)
        common = (str(data), str(model_dir), str(args.seed))
        results = {
            "adapterhub": side(their_python, THEIRS, *common),
            "ours": side(sys.executable, OURS, *common, "0"),
            "ours_models_own_loss": side(sys.executable, OURS, *common, "1"),
        }
    theirs = results["adapterhub"]["tokens_per_sec"]
    for name, r in results.items():
        r["throughput_vs_adapterhub"] = round(r["tokens_per_sec"] / theirs, 3)
        print(
            f"{name:>21}: {r['tokens_per_sec']:6.1f} tokens/s ({r['throughput_vs_adapterhub']:.3f} x AdapterHub), "
            f"{r['steps']} steps in {r['train_seconds']:.0f} s; validation loss {r['val_loss_before']:.4f} -> "
            f"{r['val_loss_after']:.4f}; {r['trainable_params']:,} trainable"
        )
    print(json.dumps({"bench": "adapterhub_instruction", "steps": args.steps, "seed": args.seed, **sizes, **results}))


if __name__ == "__main__":
    main()
