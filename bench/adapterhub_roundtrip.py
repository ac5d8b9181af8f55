"""AdapterHub round trip: adapters saved by the real `adapters` 1.3.0 load into Adapter Studio with the same
outputs, and Adapter Studio's exports load into `adapters` with the same outputs.

    python bench/adapterhub_roundtrip.py [--tolerance 1e-5]

Their side runs in bench/.venv-adapterhub (transformers 4.57.6 + adapters 1.3.0; built once by
bench/adapterhub.py's `ensure_venv`), ours in this environment (transformers 5.x), both on the embedded
all-MiniLM-L6-v2 with the same token ids (tokenised once, here). Every adapter and head gets random
non-zero weights. Imports: Houlsby (`DoubleSeqBnConfig`) with their default two-layer head; Pfeiffer
(`SeqBnConfig(original_ln_before=False)`) headless (hidden states); parallel (`ParBnConfig`) with a
one-layer head; Houlsby with their two-layer head on tiny random RoBERTa, XLM-R and ELECTRA bases; and
Houlsby with a head in their default save (`pytorch_adapter.bin` + `pytorch_model_head.bin`), which loads
locally through `torch.load(weights_only=True)`. Exports: Houlsby with our linear head, Pfeiffer
headless, parallel with leave_out, and every imported adapter with a head saved by us and exported again.
Refusals: `SeqBnConfig`'s default `original_ln_before=True`, and the pickled save where pickles are not
allowed (a public studio). Prints one line per case with the largest absolute difference (logits or
hidden states), then one JSON line. Exit status 1 if a case misses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TEXTS = ["Where is my parcel?", "I was charged twice for one order.", "The app crashes when I log in.", "hi"]

THEIR_SIDE = r"""
import json, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
import adapters
from adapters import AutoAdapterModel, DoubleSeqBnConfig, SeqBnConfig, ParBnConfig
from transformers import AutoModel

phase, model_path, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
x = load_file(work / "inputs.safetensors")
x, tiny = {k: x[k] for k in ("input_ids", "attention_mask")}, {k: x[f"tiny_{k}"] for k in ("input_ids", "attention_mask")}
minilm, inputs = model_path, x
out = {}

def randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module:
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)

def headless(config=None, name=None, folder=None):
    model = AutoModel.from_pretrained(model_path)
    adapters.init(model)
    if folder is None:
        model.add_adapter(name, config=config)
        randomize([p for n, p in model.named_parameters() if f"adapters.{name}." in n], len(name))
    else:
        name = model.load_adapter(str(folder), use_safetensors=True)
    model.set_active_adapters(name)
    model.eval()
    with torch.no_grad():
        return model, name, model(**x).last_hidden_state

def with_head(config=None, name=None, layers=2, folder=None):
    model = AutoAdapterModel.from_pretrained(model_path)
    if folder is None:
        model.add_adapter(name, config=config)
        model.add_classification_head(name, num_labels=3, layers=layers, id2label={0: "orders", 1: "billing", 2: "tech"})
        randomize([p for n, p in model.named_parameters() if name in n.split(".")], len(name) + layers)
    else:
        name = model.load_adapter(str(folder), use_safetensors=True)
    model.set_active_adapters(name)
    model.eval()
    with torch.no_grad():
        return model, name, model(**x).logits

if phase == "make":
    base = AutoModel.from_pretrained(model_path).eval()
    with torch.no_grad():
        out["base"] = base(**x).last_hidden_state
    m, n, out["houlsby_head2"] = with_head(DoubleSeqBnConfig(reduction_factor=16), "houlsby_head2", 2)
    m.save_adapter(str(work / "theirs" / n), n, use_safetensors=True)
    m, n, out["pfeiffer_headless"] = headless(SeqBnConfig(original_ln_before=False, reduction_factor=12), "pfeiffer_headless")
    m.save_adapter(str(work / "theirs" / n), n, use_safetensors=True)
    m, n, out["parallel_head1"] = with_head(ParBnConfig(reduction_factor=8), "parallel_head1", 1)
    m.save_adapter(str(work / "theirs" / n), n, use_safetensors=True)
    m, n, _ = headless(SeqBnConfig(reduction_factor=16), "pfeiffer_default")
    m.save_adapter(str(work / "theirs" / n), n, use_safetensors=True)
    m, n, out["pickled"] = with_head(DoubleSeqBnConfig(reduction_factor=16), "pickled", 2)
    m.save_adapter(str(work / "theirs" / n), n)  # their default: pytorch_adapter.bin, pytorch_model_head.bin
    for arch in sorted((work / "arch").iterdir()):  # tiny random RoBERTa, XLM-R, ELECTRA
        model_path, x = str(arch), tiny
        m, n, out[f"arch_{arch.name}"] = with_head(DoubleSeqBnConfig(reduction_factor=4), "tiny_task", 2)
        m.save_adapter(str(work / "theirs" / f"arch_{arch.name}"), n, use_safetensors=True)
else:
    for folder in sorted((work / "ours").iterdir()):
        kind = json.loads((folder / "kind.json").read_text())
        arch = folder.name.startswith("arch_")
        model_path, x = (str(work / "arch" / folder.name[5:]), tiny) if arch else (minilm, inputs)
        load = with_head if kind == "head" else headless
        out[folder.name] = load(folder=folder)[2]
save_file({k: v.contiguous() for k, v in out.items()}, str(work / f"{phase}.safetensors"))
"""


ARCHS = ("roberta", "xlm-roberta", "electra")  # tiny random ones: both libraries lay them out as BERT


def tiny_base(model_type: str):
    import transformers

    config = transformers.AutoConfig.for_model(
        model_type, vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, embedding_size=32, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.AutoModel.from_config(config).eval()


def random_weights(model, name: str, seed: int) -> None:
    from adapter_core import adapter_parameters

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def outputs(base, name: str | None, x: dict, logits: bool) -> torch.Tensor:
    from adapter_core import classification_logits, use_adapter

    with torch.no_grad():
        if logits:
            return classification_logits(base.model, name, x["input_ids"], x["attention_mask"])
        with use_adapter(base.model, name):
            return base.model(**x).last_hidden_state


def effect(base, name: str, x: dict) -> float:
    """How far the adapter moves the hidden states: a round trip of a do-nothing adapter proves nothing."""
    return (outputs(base, name, x, False) - outputs(base, None, x, False)).abs().max().item()


def run_theirs(python: Path, phase: str, model_path: Path, work: Path) -> dict:
    done = subprocess.run(
        [str(python), "-c", THEIR_SIDE, phase, str(model_path), str(work)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return load_file(work / f"{phase}.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    from adapterhub import ensure_venv
    from transformers import AutoModel

    from adapter_core import (
        AdapterConfig,
        AdapterError,
        add_adapter,
        classification_logits,
        load_adapter,
        load_base,
        save_adapter,
        use_adapter,
    )
    from adapter_core.catalog import CATALOG, embedded_path
    from adapter_core.share import export_adapterhub

    start = time.perf_counter()
    python, model_path = ensure_venv(), embedded_path(CATALOG["minilm"])
    base = load_base("minilm")
    x = dict(base.tokenizer(TEXTS, padding=True, return_tensors="pt"))
    x = {k: x[k] for k in ("input_ids", "attention_mask")}
    rows, refusals = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = {"input_ids": torch.tensor([[0, 5, 9, 33, 12, 2, 1, 1], [0, 7, 44, 2, 1, 1, 1, 1]])}
        tiny["attention_mask"] = (tiny["input_ids"] != 1).long()
        tensors = {**x, **{f"tiny_{k}": v for k, v in tiny.items()}}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(work / "inputs.safetensors"))
        for arch in ARCHS:
            tiny_base(arch).save_pretrained(work / "arch" / arch)
        (work / "theirs").mkdir()
        theirs = run_theirs(python, "make", model_path, work)
        with torch.no_grad():
            base_diff = (base.model(**x).last_hidden_state - theirs["base"]).abs().max().item()
        # Import: their folders onto our base.
        imports = (("houlsby_head2", True), ("pfeiffer_headless", False), ("parallel_head1", True), ("pickled", True))
        for name, logits in imports:
            loaded = load_adapter(base.model, work / "theirs" / name)
            diff = (outputs(base, loaded, x, logits) - theirs[name]).abs().max().item()
            rows.append({"case": f"import {name}", "max_abs_diff": diff, "adapter_effect": effect(base, loaded, x)})
        for arch in ARCHS:
            name, model = f"arch_{arch}", AutoModel.from_pretrained(work / "arch" / arch).eval()  # as their side
            loaded = load_adapter(model, work / "theirs" / name, name=name)
            with torch.no_grad():
                got = classification_logits(model, loaded, tiny["input_ids"], tiny["attention_mask"])
                with use_adapter(model, loaded):
                    moved = model(**tiny).last_hidden_state
                with use_adapter(model, None):
                    moved = (moved - model(**tiny).last_hidden_state).abs().max().item()
            rows.append(
                {
                    "case": f"import {name}",
                    "max_abs_diff": (got - theirs[name]).abs().max().item(),
                    "adapter_effect": moved,
                }
            )
            save_adapter(model, loaded, work / "saved" / name)
        for name, folder, allow in (
            ("pfeiffer_default", "pfeiffer_default", True),
            ("pickled_public", "pickled", False),
        ):
            try:
                load_adapter(base.model, work / "theirs" / folder, name=f"refused_{name}", allow_pickle=allow)
                refusals[name] = None
            except AdapterError as e:
                refusals[name] = str(e)
        # Export: ours, written in their format.
        ours, effects = {}, {"reexport_houlsby_head2": effect(base, "houlsby_head2", x)}
        made = [
            ("houlsby_linear", AdapterConfig(bottleneck=16), "classification"),
            (
                "pfeiffer_instruction",
                AdapterConfig(bottleneck=32, placement="pfeiffer", activation="swish"),
                "instruction",
            ),
            (
                "parallel_leave_out",
                AdapterConfig(bottleneck=24, placement="parallel", activation="relu", leave_out=[1]),
                "instruction",
            ),
        ]
        for seed, (name, config, task) in enumerate(made):
            labels = ["orders", "billing", "tech"] if task == "classification" else None
            add_adapter(base.model, name, config, task=task, labels=labels, pooling="cls" if labels else None)
            random_weights(base.model, name, seed)
            save_adapter(base.model, name, work / "saved" / name)
            ours[name], effects[name] = outputs(base, name, x, task == "classification"), effect(base, name, x)
        save_adapter(base.model, "houlsby_head2", work / "saved" / "reexport_houlsby_head2")
        ours["reexport_houlsby_head2"] = theirs["houlsby_head2"]
        for arch in ARCHS:  # their tiny-architecture adapters, saved by us, exported back
            ours[f"arch_{arch}"] = theirs[f"arch_{arch}"]
            effects[f"arch_{arch}"] = next(r["adapter_effect"] for r in rows if r["case"] == f"import arch_{arch}")
        for name in ours:
            export_adapterhub(work / "saved" / name, work / "ours" / name)
            kind = (
                "head"
                if name in ("houlsby_linear", "reexport_houlsby_head2") or name.startswith("arch_")
                else "headless"
            )
            (work / "ours" / name / "kind.json").write_text(json.dumps(kind))
        loaded = run_theirs(python, "load", model_path, work)
        for name, value in ours.items():
            diff = (loaded[name] - value).abs().max().item()
            rows.append({"case": f"export {name}", "max_abs_diff": diff, "adapter_effect": effects[name]})
    ok = all(r["max_abs_diff"] <= args.tolerance and r["adapter_effect"] > 0.1 for r in rows) and all(refusals.values())
    for r in rows:
        print(
            f"{r['case']:<36} max |difference| {r['max_abs_diff']:.3g} (the adapter moves hidden states by up to {r['adapter_effect']:.3g})"
        )
    print(f"{'bare base (transformers 4.57 vs 5.x)':<36} max |difference| {base_diff:.3g}")
    for name, message in refusals.items():
        print(f"refused {name}: {message}")
    print(
        json.dumps(
            {
                "bench": "adapterhub_roundtrip",
                "tolerance": args.tolerance,
                "ok": ok,
                "base_diff": base_diff,
                "cases": rows,
                "refusals": refusals,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
