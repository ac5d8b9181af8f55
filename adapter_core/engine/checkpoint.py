"""The resume checkpoint, `<run>/checkpoint/`: what a stopped or interrupted run needs to go on where it was.

accelerate's `save_state` writes the optimizer, the scheduler (registered for checkpointing) and every
process's RNG states; the trainable weights (current and best) go beside them by parameter order, so a
checkpoint does not hold the frozen base and loads whatever wraps the model (DDP or not). `state.json`
holds the loop's own counters: the step, the epoch and how many of its batches were consumed (the batch
order is a function of (seed, epoch), so skipping those resumes the data order), and the best metric.

A completed run needs no checkpoint and loses it; a full fine-tune writes none (it keeps no weights).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from ..atomic import replace_dir
from ..errors import AdapterError

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.safetensors"
BEST_FILE = "best.safetensors"
# Settings a resumed run may change: they do not alter what the steps compute.
CHANGEABLE = ("report_to", "sample_prompts", "max_seconds", "early_stopping_patience", "eval_every")


def register(accelerator: Accelerator, scheduler: Any) -> None:
    """Have `save_state` / `load_state` cover the hand-stepped scheduler, and leave the model to us."""
    accelerator.register_for_checkpointing(scheduler)
    accelerator.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear())
    accelerator.register_load_state_pre_hook(lambda models, input_dir: models.clear())


def save(
    accelerator: Accelerator,
    out_dir: Path,
    state: dict[str, Any],
    params: list[torch.nn.Parameter],
    best: list[torch.Tensor] | None,
) -> None:
    """Write the checkpoint (every process takes part: each saves its RNG state) and swap it in whole."""
    staging, target = out_dir / f".{CHECKPOINT_DIR}.staging", out_dir / CHECKPOINT_DIR
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        save_file(_by_index(params), staging / WEIGHTS_FILE)
        if best is not None:
            save_file(_by_index(best), staging / BEST_FILE)
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
        replace_dir(staging, target)
    accelerator.wait_for_everyone()


def load(
    accelerator: Accelerator, out_dir: Path, config: dict[str, Any], params: list[torch.nn.Parameter]
) -> tuple[dict[str, Any], list[torch.Tensor] | None]:
    """Restore the checkpoint in `out_dir` into `params`, the optimizer, scheduler and RNGs; return the
    loop's saved state and the best weights (None: the run had no best yet)."""
    folder = out_dir / CHECKPOINT_DIR
    if not (folder / STATE_FILE).is_file():
        raise AdapterError(
            f"The run {out_dir.name!r} has no checkpoint to resume: it finished, or stopped before its first "
            "evaluation. Start it again instead."
        )
    state = json.loads((folder / STATE_FILE).read_text())
    changed = sorted(k for k, v in state["config"].items() if k not in CHANGEABLE and config.get(k, v) != v)
    if changed:
        raise AdapterError(
            f"The run {out_dir.name!r} was trained with other settings ({', '.join(changed)}); resume it with "
            "the settings it started with."
        )
    accelerator.load_state(str(folder))
    weights = load_file(folder / WEIGHTS_FILE)
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(weights[f"p{i}"])
    best = load_file(folder / BEST_FILE) if (folder / BEST_FILE).is_file() else None
    return state, None if best is None else [best[f"p{i}"] for i in range(len(best))]


def remove(out_dir: Path) -> None:
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)


def _by_index(tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"p{i}": t.detach().to("cpu").contiguous() for i, t in enumerate(tensors)}
