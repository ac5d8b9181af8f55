"""Will it fit, and how long will it take: the engine's memory estimate and measured ETA, in words.

Before Start, the run summary asks the engine (`adapter_core.engine.memory_fit`) for the memory the run needs
(a closed form over the resident base's shape, at the longest allowed example), and whether that is
free on the training device. Once a run starts, its
"training" status event carries the same estimate and the time measured on its first steps.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from adapter_core import AdapterError
from adapter_core.engine import check_fit, estimate_memory, gib

from .hardware import hardware
from .service import Studio
from .settings import train_config

log = logging.getLogger("adapter_studio")


def memory_text(memory: dict[str, Any] | None) -> str:
    """ "about 1.2 GB (weights 0.1 GB, activations 1.0 GB)" from the engine's estimate, or ""."""
    if not isinstance(memory, dict) or not isinstance(memory.get("total"), (int, float)):
        return ""
    parts = [
        f"{label} {gib(memory[key])}"
        for key, label in (
            ("weights", "weights"),
            ("trainable_state", "training state"),
            ("activations", "activations"),
        )
        if isinstance(memory.get(key), (int, float))
    ]
    return f"about {gib(memory['total'])}" + (f" ({', '.join(parts)})" if parts else "")


def fit_before_start(
    studio: Studio, base: str, task: str, num_labels: int, settings: dict[str, Any], plan, longest: int | None = None
) -> list[str]:
    """[the memory line, then a warning when it will not fit], or [] when the engine cannot say. With the
    data's `longest` row (tokens, at the max length), the figure is the one the run itself will report."""
    source = {"path": "", "name": "data", "ready": True}
    config = train_config(base, source, task, {}, "estimate", settings)
    config = replace(config, batch_size=plan.batch_size, epochs=plan.epochs, lr=plan.lr)
    try:
        estimate = estimate_memory(studio.base(base).model, config, num_labels, length=longest or None)
        # Training loads a base of its own: its weights are still to be found room for.
        warning = check_fit(estimate, "cpu" if hardware().trains_on_cpu else "cuda", weights_loaded=False)
    except AdapterError:
        raise
    except Exception:  # an estimate is a courtesy: it never blocks the summary
        log.exception("memory estimate failed")
        return []
    rows = f"rows of up to {estimate['length']} tokens" if longest else f"at most {config.max_length} tokens"
    line = f"Memory: {memory_text(estimate)} at batch {plan.batch_size} and {rows}."
    return [line] + ([warning] if warning else [])


def fit_line(info: dict[str, Any] | None) -> str:
    """The training event's memory estimate (its time is the progress line's "about N min left")."""
    info = info or {}
    parts = []
    memory = memory_text(info.get("memory"))
    if memory:
        parts.append(f"memory {memory}")
    return ", ".join(parts)
