"""Against AdapterHub, the reference implementation: the same MiniLM, BANKING77 split, bottleneck (64, both
sub-layers), batch, learning rate, epochs and seed, trained by `adapters` 1.3.0 and by Adapter Studio.

    python bench/adapterhub.py [--epochs 4] [--fast]

`adapters` 1.3.0 needs transformers 4.57, so its side runs in a virtual environment that this script
creates once under bench/.venv-adapterhub (torch 2.13.0 CPU, from this machine's wheel cache). Each
side trains in its own process, one after the other, and is scored on the same held-out test split.
Prints our throughput as a ratio of theirs, and both accuracies, as one JSON line last.
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
THEIR_PACKAGES = ["torch==2.13.0", "transformers==4.57.1", "adapters==1.3.0", "pandas", "safetensors"]

THEIR_SIDE = r"""
import json, math, random, sys, time
import numpy as np, pandas as pd, torch
from transformers import AutoTokenizer, get_linear_schedule_with_warmup
from adapters import AutoAdapterModel, DoubleSeqBnConfig

model_path, train_csv, test_csv, epochs, lr, batch, max_len, seed = sys.argv[1:9]
epochs, lr, batch, max_len, seed = float(epochs), float(lr), int(batch), int(max_len), int(seed)
torch.manual_seed(seed); random.seed(seed); np.random.seed(seed)
train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
labels = sorted(train.label.unique()); index = {l: i for i, l in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(model_path)
model = AutoAdapterModel.from_pretrained(model_path)
# Houlsby placement (after attention and feed-forward), bottleneck 384 / 6 = 64.
model.add_adapter("b77", config=DoubleSeqBnConfig(reduction_factor=6))
model.add_classification_head("b77", num_labels=len(labels), layers=1)
model.train_adapter("b77")
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
steps_per_epoch = math.ceil(len(train) / batch)
total = int(steps_per_epoch * epochs)
sched = get_linear_schedule_with_warmup(opt, int(0.06 * total), total)
enc = lambda texts: tok(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
step, seen, t0 = 0, 0, time.perf_counter()
model.train()
while step < total:
    order = np.random.permutation(len(train))
    for s in range(0, len(order), batch):
        rows = train.iloc[order[s:s + batch]]
        x = enc(rows.text)
        y = torch.tensor([index[l] for l in rows.label])
        out = model(**x, labels=y)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step(); opt.zero_grad()
        step += 1; seen += len(rows)
        if step >= total:
            break
train_s = time.perf_counter() - t0
model.eval(); correct = 0
with torch.no_grad():
    for s in range(0, len(test), 64):
        rows = test.iloc[s:s + 64]
        pred = model(**enc(rows.text)).logits.argmax(-1)
        correct += sum(int(p) == index[l] for p, l in zip(pred, rows.label))
print(json.dumps({"side": "adapterhub", "test_accuracy": correct / len(test), "train_seconds": train_s,
                  "examples_per_sec": seen / train_s, "steps": step}))
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
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from banking77 import make_split  # the same held-out split as the BANKING77 benchmark

    from adapter_core.catalog import CATALOG, embedded_path
    from adapter_core.engine.train import TrainConfig

    python = ensure_venv()
    d = TrainConfig()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_csv, test_csv = make_split(work, args.fast)
        hp = [str(args.epochs), str(d.lr), str(d.batch_size), "64", str(d.seed)]
        theirs = subprocess.run(
            [str(python), "-c", THEIR_SIDE, str(embedded_path(CATALOG["minilm"])), str(train_csv), str(test_csv), *hp],
            capture_output=True,
            text=True,
        )
        if theirs.returncode != 0:
            sys.exit(theirs.stderr[-3000:])
        theirs = json.loads(theirs.stdout.strip().splitlines()[-1])
        ours_cmd = [
            sys.executable,
            str(HERE / "banking77.py"),
            "--modes",
            "adapter",
            "--budget",
            "100000",
            "--epochs",
            str(args.epochs),
            "--max-length",
            "64",
        ] + (["--fast"] if args.fast else [])
        ours = subprocess.run(ours_cmd, capture_output=True, text=True)
        if ours.returncode != 0:
            sys.exit(ours.stderr[-3000:])
        ours = json.loads(ours.stdout.strip().splitlines()[-1])["rows"][0]
    ratio = round(ours["examples_per_sec"] / theirs["examples_per_sec"], 3)
    print(
        f"AdapterHub: {theirs['test_accuracy']:.2%} in {theirs['train_seconds']:.0f} s "
        f"({theirs['examples_per_sec']:.1f} examples/s)"
    )
    print(
        f"Adapter Studio: {ours['test_accuracy']:.2%} in {ours['train_seconds']:.0f} s "
        f"({ours['examples_per_sec']:.1f} examples/s); throughput ratio {ratio}"
    )
    print(
        json.dumps(
            {
                "bench": "adapterhub",
                "epochs": args.epochs,
                "fast": args.fast,
                "adapterhub": theirs,
                "ours": ours,
                "throughput_ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
