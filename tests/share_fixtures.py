"""Helpers for the sharing tests: real adapters on tiny models, and a Hugging Face cache filled by hand in
huggingface_hub's own layout (blobs, snapshot symlinks, refs), checked with its `scan_cache_dir`."""

import hashlib
import json
import os
from pathlib import Path

import torch
from helpers import tiny_model
from huggingface_hub import scan_cache_dir
from huggingface_hub.file_download import repo_folder_name

from adapter_core import AdapterConfig, adapter_parameters, add_adapter, save_adapter

EVENTS = [
    {"kind": "status", "status": "training", "info": {"train_rows": 90, "val_rows": 10}},
    *({"kind": "step", "step": s, "loss": 2.0 / s} for s in range(1, 21)),
    *({"kind": "eval", "step": s, "metrics": {"val_loss": 1.0 / s, "accuracy": s / 25}} for s in (10, 20)),
]


def tiny_adapter(
    folder: Path, name="route", task="classification", labels=("billing", "orders", "tech"), extra=None, pooling="cls"
):
    """A tiny-BERT adapter with random non-zero weights, saved to `folder`; returns (model, folder)."""
    model = tiny_model("bert", head="base")
    labels = list(labels) if task == "classification" else None
    add_adapter(model, name, AdapterConfig(bottleneck=4), task=task, labels=labels, pooling=pooling if labels else None)
    g = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model, save_adapter(model, name, folder, extra=extra)


def write_events(path: Path, events=EVENTS) -> None:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")


def cache_repo(
    cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "c0ffee" * 6 + "beef", repo_type: str = "model"
) -> Path:
    """Put `files` (path in repo -> bytes) into a Hugging Face cache as a download of `repo_id` at `main`
    would: content-addressed blobs, a snapshot of relative symlinks, and refs/main. Returns the snapshot.
    `repo_type="dataset"`: the `datasets--OWNER--NAME` folder a dataset download makes."""
    storage = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    snapshot = storage / "snapshots" / commit
    for path, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # a second download of the same commit finds it in place
            link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    info = scan_cache_dir(cache)  # the layout is huggingface_hub's own, or this fails
    repo = next(r for r in info.repos if r.repo_id == repo_id)
    assert not info.warnings and {f.file_name for r in repo.revisions for f in r.files} >= {Path(p).name for p in files}
    return snapshot


def folder_files(folder: Path, names=("adapter_config.json", "adapter_model.safetensors", "README.md", "curve.png")):
    return {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}
