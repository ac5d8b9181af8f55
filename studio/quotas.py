"""The checks a training request meets before it is queued: its settings, its data, and its owner's share.

Kept apart from the service so each quota reads as one rule with one message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapter_core.engine.data import load_data
from adapter_core.errors import AdapterError

from .hardware import hardware
from .library import check_name

if TYPE_CHECKING:
    from adapter_core.engine.train import TrainConfig

    from .service import Studio


def check_submit(studio: Studio, config: TrainConfig, owner: str | None) -> list[str]:
    """Refuse what the policy forbids, clamp what it bounds, and return notes on what was clamped."""
    policy = studio.policy
    config.check()  # types and ranges first, so the messages below compare numbers
    config.name = check_name(config.name)
    notes = _clamp_length(studio, config)
    if config.epochs is not None and config.epochs > policy.max_epochs:
        raise AdapterError(f"Epochs {config.epochs:g} is over this studio's limit of {policy.max_epochs:g}.")
    if config.batch_size is not None and config.batch_size > policy.max_batch_size:
        raise AdapterError(f"Batch size {config.batch_size} is over this studio's limit of {policy.max_batch_size}.")
    if config.bottleneck > policy.max_bottleneck:
        raise AdapterError(f"Bottleneck {config.bottleneck} is over this studio's limit of {policy.max_bottleneck}.")
    if config.max_steps > policy.max_steps:
        raise AdapterError(f"Max steps {config.max_steps} is over this studio's limit of {policy.max_steps}.")
    if policy.public:  # every public run ends by itself, whatever it asked for
        config.max_steps = config.max_steps or policy.max_steps
        config.max_seconds = min(config.max_seconds or policy.max_seconds, policy.max_seconds)
    if hardware().kind == "zero-gpu":  # ZeroGPU lends its GPU inside requests only; a run is no request
        config.device = "cpu"
    data = load_data(config.data, config.task, config.columns)  # data errors now, not in the queue
    if len(data.labels or []) > policy.max_labels:
        raise AdapterError(f"The file has {len(data.labels)} labels; this studio trains at most {policy.max_labels}.")
    _check_shares(studio, owner)
    return notes


def _clamp_length(studio: Studio, config: TrainConfig) -> list[str]:
    info = studio.model_info(config.base)  # also checks the model is allowed
    limit = min(policy_max := studio.policy.max_length, info.max_positions or policy_max)
    if config.max_length <= limit:
        return []
    asked, config.max_length = config.max_length, limit
    return [f"Max length {asked} is more than {info.name} can take; training uses {limit}."]


def _check_shares(studio: Studio, owner: str | None) -> None:
    policy, jobs = studio.policy, studio.jobs
    if jobs.active_count() >= policy.max_queue:
        raise AdapterError(
            f"The studio's training queue is full ({policy.max_queue} runs). Try again in a few minutes."
        )
    if owner is None:
        return
    active = jobs.active_count(owner)
    if active >= policy.max_jobs_per_owner:
        raise AdapterError(
            f"You already have {active} runs queued or running (the limit is {policy.max_jobs_per_owner}). "
            "Wait for one to finish, or stop it."
        )
    check_library_room(studio, owner)


def check_library_room(studio: Studio, owner: str, incoming: int = 1) -> None:
    """Room in `owner`'s library for one more adapter (a run in progress counts as one) of `incoming`
    bytes: an upload's size, or at least one byte for a run whose adapter does not exist yet."""
    policy = studio.policy
    count, size = studio.library.usage(owner)
    if count + studio.jobs.active_count(owner) >= policy.max_adapters_per_owner:
        raise AdapterError(
            f"Your library is full ({count} adapters, the limit is {policy.max_adapters_per_owner}). Delete one first."
        )
    if size + incoming > policy.max_bytes_per_owner:
        raise AdapterError(
            f"Your adapters take {size / 2**20:.0f} MB; the limit is {policy.max_bytes_per_owner / 2**20:.0f} MB. "
            "Delete one first."
        )
