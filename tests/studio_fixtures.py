"""Helpers that put real adapters into a studio's library without a training run."""

from pathlib import Path

import torch

from adapter_core import AdapterConfig, adapter_parameters, add_adapter, load_base, save_adapter


def publish_random(
    studio, base_name: str, name: str, task: str, labels=None, seed=0, scale=0.05, bottleneck=16, owner=None
):
    """An adapter with random (trained-looking) weights, saved and published to the studio's library
    (owner None: a shared example)."""
    base = load_base(base_name)
    add_adapter(base.model, name, AdapterConfig(bottleneck=bottleneck), task=task, labels=labels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(base.model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    folder = Path(studio.home) / "scratch" / name
    save_adapter(base.model, name, folder, extra={"base_model": base_name})
    return studio.library.publish(folder, name, owner=owner)


def publish_fixed_router(studio, name: str, labels: list[str], winner: str):
    """A router that always picks `winner`: zero head weights, a large bias on that label."""
    base = load_base("minilm")
    add_adapter(base.model, name, AdapterConfig(bottleneck=8), labels=labels)
    head = base.model.adapter_core_heads[name]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([5.0 if label == winner else 0.0 for label in labels]))
    folder = Path(studio.home) / "scratch" / name
    save_adapter(base.model, name, folder, extra={"base_model": "minilm"})
    return studio.library.publish(folder, name)
