"""What the studio shows about a base model: its architecture, size, tasks and position limit."""

from __future__ import annotations

from dataclasses import dataclass

from adapter_core import CATALOG, Base, position_limit


@dataclass
class ModelInfo:
    name: str
    architecture: str
    model_type: str
    family: str
    parameters: int
    hidden_size: int
    layers: int
    tasks: tuple[str, ...]
    max_positions: int | None


def model_info(base: Base) -> ModelInfo:
    config = base.model.config
    entry = CATALOG.get(base.name)
    if entry:
        tasks = entry.tasks
    else:
        tasks = ("classification", "instruction") if base.family == "decoder" else ("classification",)
    return ModelInfo(
        base.name,
        type(base.model).__name__,
        config.model_type,
        base.family,
        base.num_parameters,
        config.hidden_size,
        config.num_hidden_layers,
        tasks,
        position_limit(config),
    )
