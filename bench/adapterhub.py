"""Against AdapterHub, the reference implementation: the same MiniLM, training rows, test split, bottleneck
(64, both sub-layers), batch, learning rate, epochs and seed, trained by `adapters` 1.3.0 and by
Adapter Studio.

    python bench/adapterhub.py [--epochs 4] [--seed 42] [--fast] [--matched] [--base-dropout on|off]

`adapters` 1.3.0 needs transformers 4.57.6, so its side runs in a virtual environment that this script
creates once under bench/.venv-adapterhub (torch 2.13.0). Each side trains in its own process, one
after the other, on the same rows, and is scored on the same held-out test split. Our engine's
validation rows (which pick our best checkpoint) are cut from the training data before either side
sees it, so neither trains on them. Both sides train on the same kind of batches: length-grouped,
each padded to its longest row (the grouping is copied into their script). Beside the end-to-end
training throughput, each side also times one training step on the same fixed batch (32 rows x 64
tokens), which isolates the implementation from data handling. Prints our throughput as a ratio of
theirs, the fixed-batch speed ratio and both accuracies, as one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-adapterhub"
THEIR_PACKAGES = ["torch==2.13.0", "transformers==4.57.6", "adapters==1.3.0", "pandas", "safetensors"]

THEIR_SIDE = r"""
import json, math, random, sys, time
import numpy as np, pandas as pd, torch
from transformers import AutoTokenizer, get_linear_schedule_with_warmup
from adapters import AutoAdapterModel, DoubleSeqBnConfig

model_path, train_csv, test_csv, epochs, lr, batch, max_len, seed, matched = sys.argv[1:10]
epochs, lr, batch, max_len, seed = float(epochs), float(lr), int(batch), int(max_len), int(seed)
torch.manual_seed(seed); random.seed(seed); np.random.seed(seed)
train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
labels = sorted(train.label.unique()); index = {l: i for i, l in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(model_path)
model = AutoAdapterModel.from_pretrained(model_path)
# Houlsby placement (after attention and feed-forward), bottleneck 384 / 6 = 64.
# --matched: W_up at zero (Kaiming-uniform W_down), as ours; the default "bert" init draws both from N(0, 0.02).
init = {"init_weights": "mam_adapter"} if matched == "1" else {}
model.add_adapter("b77", config=DoubleSeqBnConfig(reduction_factor=6, **init))
model.add_classification_head("b77", num_labels=len(labels), layers=1)
model.train_adapter("b77")
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
steps_per_epoch = math.ceil(len(train) / batch)
total = int(steps_per_epoch * epochs)
sched = get_linear_schedule_with_warmup(opt, int(0.06 * total), total)
# Dynamic padding (to the longest row of each batch), as Adapter Studio does; fixed padding to max_len
# would make their side slower for a reason that has nothing to do with the adapters.
enc = lambda texts: tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
lengths = np.array([len(ids) for ids in tok(list(train.text), truncation=True, max_length=max_len)["input_ids"]])

def epoch_batches(epoch):
    # Adapter Studio's length-grouped batches (adapter_core/engine/batches.py), so both sides train on
    # equally padded batches: shuffle, sort within windows of 50 batches, shuffle the batch order.
    rng = np.random.default_rng(seed + epoch)
    order, window, out = rng.permutation(len(train)), 50 * batch, []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    rng.shuffle(out)
    return out

step, seen, epoch, t0 = 0, 0, 0, time.perf_counter()
model.train()
while step < total:
    for idx in epoch_batches(epoch):
        rows = train.iloc[idx]
        x = enc(rows.text)
        y = torch.tensor([index[l] for l in rows.label])
        out = model(**x, labels=y)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        step += 1; seen += len(rows)
        if step >= total:
            break
    epoch += 1
train_s = time.perf_counter() - t0
model.eval(); correct = 0
with torch.no_grad():
    for s in range(0, len(test), 64):
        rows = test.iloc[s:s + 64]
        pred = model(**enc(rows.text)).logits.argmax(-1)
        correct += sum(int(p) == index[l] for p, l in zip(pred, rows.label))
# The same step on one fixed batch (32 rows padded to 64 tokens), timed apart from data handling.
model.train()
x = tok(list(train.text[:32]), padding="max_length", truncation=True, max_length=64, return_tensors="pt")
y = torch.tensor([index[l] for l in train.label[:32]])
def one_step():
    model(**x, labels=y).loss.backward(); opt.step(); opt.zero_grad()
for _ in range(3): one_step()
times = []
for _ in range(15):
    t = time.perf_counter(); one_step(); times.append(time.perf_counter() - t)
print(json.dumps({"side": "adapterhub", "test_accuracy": correct / len(test), "train_seconds": train_s,
                  "examples_per_sec": seen / train_s, "steps": step,
                  "fixed_step_ms": 1e3 * float(np.median(times)), "trainable_params": sum(p.numel() for p in params)}))
"""


OUR_SIDE = r"""
import sys
from pathlib import Path
here, train_csv, val_csv, test_csv, work, epochs, seed, matched, base_dropout = sys.argv[1:10]
sys.path.insert(0, here)
from banking77 import run
from adapter_core import AdapterConfig
run("adapter", 2e-3, Path(train_csv), Path(test_csv), 0, Path(work), epochs=float(epochs), max_length=64,
    val_data=val_csv, seed=int(seed), adapter=AdapterConfig(activation="swish" if matched == "1" else "gelu"),
    base_dropout=base_dropout == "1")
"""

OUR_STEP = r"""
import json, statistics, sys, time
import pandas as pd, torch
from adapter_core import AdapterConfig, add_adapter, classification_logits, load_base, train_mode
train_csv, matched, base_dropout = sys.argv[1:4]
train = pd.read_csv(train_csv)
labels = sorted(train.label.unique())
base = load_base("minilm")
model, tok = base.model, base.tokenizer
add_adapter(model, "b77", AdapterConfig(bottleneck=64, activation="swish" if matched == "1" else "gelu"), labels=labels)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)
x = tok(list(train.text[:32]), padding="max_length", truncation=True, max_length=64, return_tensors="pt")
y = torch.tensor([labels.index(l) for l in train.label[:32]])
train_mode(model, base_dropout == "1")
def one_step():
    logits = classification_logits(model, "b77", x["input_ids"], x["attention_mask"])
    torch.nn.functional.cross_entropy(logits, y).backward(); opt.step(); opt.zero_grad()
for _ in range(3): one_step()
times = []
for _ in range(15):
    t = time.perf_counter(); one_step(); times.append(time.perf_counter() - t)
print(json.dumps({"fixed_step_ms": 1e3 * statistics.median(times), "trainable_params": sum(p.numel() for p in params)}))
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *THEIR_PACKAGES], check=True)
    return python


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--fast", action="store_true", help="1,500 training rows, to try the script")
    ap.add_argument("--seed", type=int, default=42, help="seed of both sides (initialisation and batch order)")
    ap.add_argument(
        "--matched",
        action="store_true",
        help="the same adapter on both sides: swish (AdapterHub's default) on ours, W_up at zero on theirs",
    )
    ap.add_argument(
        "--base-dropout",
        choices=["on", "off"],
        default="on",
        help="our frozen base's dropout: on, as AdapterHub trains (model.train()), or off, our engine's default",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from banking77 import make_split  # the same held-out split as the BANKING77 benchmark

    from adapter_core.catalog import CATALOG, embedded_path
    from adapter_core.engine.data import load_data, split
    from adapter_core.engine.train import TrainConfig

    python = ensure_venv()
    d = TrainConfig()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rest_csv, test_csv = make_split(work, args.fast)
        # Both sides train on exactly the same rows: our engine's own validation split (which picks our
        # best checkpoint) is cut here, and their side never sees it either.
        rest = load_data(rest_csv, "classification")
        train_df, val_df = split(rest, d.val_fraction, d.seed)
        train_csv, val_csv = work / "train_rows.csv", work / "val_rows.csv"
        train_df[["text", "label"]].to_csv(train_csv, index=False)
        val_df[["text", "label"]].to_csv(val_csv, index=False)
        matched, base_dropout = str(int(args.matched)), str(int(args.base_dropout == "on"))
        hp = [str(args.epochs), "2e-3", "32", "64", str(args.seed), matched]  # the settings of every recorded run
        theirs = subprocess.run(
            [str(python), "-c", THEIR_SIDE, str(embedded_path(CATALOG["minilm"])), str(train_csv), str(test_csv), *hp],
            capture_output=True,
            text=True,
        )
        if theirs.returncode != 0:
            sys.exit(theirs.stderr[-3000:])
        theirs = json.loads(theirs.stdout.strip().splitlines()[-1])
        ours = subprocess.run(
            [sys.executable, "-c", OUR_SIDE, str(HERE), str(train_csv), str(val_csv), str(test_csv), str(work)]
            + [str(args.epochs), str(args.seed), matched, base_dropout],
            capture_output=True,
            text=True,
        )
        if ours.returncode != 0:
            sys.exit(ours.stderr[-3000:])
        ours = json.loads(ours.stdout.strip().splitlines()[-1])
        step = subprocess.run(
            [sys.executable, "-c", OUR_STEP, str(train_csv), matched, base_dropout], capture_output=True, text=True
        )
        if step.returncode != 0:
            sys.exit(step.stderr[-3000:])
        ours.update(json.loads(step.stdout.strip().splitlines()[-1]))
    ratio = round(ours["examples_per_sec"] / theirs["examples_per_sec"], 3)
    step_ratio = round(theirs["fixed_step_ms"] / ours["fixed_step_ms"], 3)
    print(
        f"AdapterHub: {theirs['test_accuracy']:.2%} in {theirs['train_seconds']:.0f} s "
        f"({theirs['examples_per_sec']:.1f} examples/s)"
    )
    print(
        f"Adapter Studio: {ours['test_accuracy']:.2%} in {ours['train_seconds']:.0f} s "
        f"({ours['examples_per_sec']:.1f} examples/s); throughput ratio {ratio}"
    )
    print(
        f"Fixed batch 32 x 64, one training step: AdapterHub {theirs['fixed_step_ms']:.0f} ms, "
        f"Adapter Studio {ours['fixed_step_ms']:.0f} ms; speed ratio {step_ratio}"
    )
    print(
        json.dumps(
            {
                "bench": "adapterhub",
                "epochs": args.epochs,
                "seed": args.seed,
                "matched": args.matched,
                "our_base_dropout": args.base_dropout,
                "fast": args.fast,
                "adapterhub": theirs,
                "ours": ours,
                "throughput_ratio": ratio,
                "fixed_step_speed_ratio": step_ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
