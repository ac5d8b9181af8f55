"""The checks a training request meets before it is queued: its settings, its data, and its owner's share.

Kept apart from the service so each quota reads as one rule with one message. The shares of the queue:
each owner's runs, each client address's (a `policy.share` of the queue, so free identities from one
address add up to no more), the small pool that visitors who are not signed in share, and the studio's
disk for runs and adapters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from adapter_core import AdapterError
from adapter_core.engine import ACTIVE, load_data, training_settings

from .callers import address_of
from .downloads import folder_bytes
from .hardware import hardware
from .library import Library, check_name
from .policy import Policy
from .settings import config_value

log = logging.getLogger("adapter_studio")

if TYPE_CHECKING:
    from adapter_core.engine import JobManager, TrainConfig

    from .bases import ModelInfo


class Service(Protocol):
    """What these checks read of the service (`service.Studio`, which calls them), declared here so that
    the two modules do not import each other."""

    policy: Policy
    library: Library
    jobs: JobManager

    def model_info(self, name: str) -> ModelInfo: ...

    def data_file(self, path: str | Path | None) -> Path: ...

    def data_bytes_limit(self, path: str | Path) -> int | None: ...


def check_submit(studio: Service, config: TrainConfig, owner: str | None) -> list[str]:
    """Refuse what the policy forbids, clamp what it bounds, and return notes on what was clamped."""
    notes = check_config(studio, config)
    _check_data(studio, config)
    _check_shares(studio, owner)
    return notes


def check_resume(studio: Service, config: TrainConfig, owner: str | None) -> None:
    """A resumed run meets a new run's checks: the settings it was saved with against today's policy,
    its data file still on the server, and room in the owner's share."""
    check_config(studio, config)
    if not Path(config.data).is_file():
        raise AdapterError(
            "The data file this run trained on is no longer on the server (uploads are cleared after a while). "
            "Upload it again and start a new run."
        )
    studio.data_file(config.data)
    _check_shares(studio, owner)


def cap_run(policy: Policy, config: TrainConfig) -> None:
    """Every public run ends by itself, whatever it asked for: at the policy's steps or training time."""
    if policy.public:
        config.max_steps = config.max_steps or policy.max_steps
        config.max_seconds = min(config.max_seconds or policy.max_seconds, policy.max_seconds)


def check_sweep(studio: Service, configs: list[TrainConfig], owner: str | None) -> list[str]:
    """A sweep is a few ordinary runs on one file, queued together. It counts as one run against the
    owner's run limit (its runs train one after another anyway) and as one adapter against their library
    (only the best is published), but each of its runs takes a place in the studio's queue; in public
    mode it is at most `max_sweep_runs` runs sharing one run's time budget."""
    policy = studio.policy
    check_sweep_size(policy, len(configs))
    notes: list[str] = []
    for config in configs:
        notes += [n for n in check_config(studio, config) if n not in notes]
    _check_data(studio, configs[0])  # one file for the whole grid
    if policy.public:
        share = policy.max_seconds / len(configs)
        for config in configs:
            config.max_seconds = min(config.max_seconds, share)
        notes.append(
            f"A sweep shares one run's time budget: each of its {len(configs)} runs trains at most "
            f"{share / 60:.1f} minutes."
        )
    _check_shares(studio, owner, runs=len(configs), sweep=True)
    return notes


def check_sweep_size(policy: Policy, runs: int, grid: str = "") -> None:
    if runs < 1:
        raise AdapterError("A sweep needs at least one bottleneck and one learning rate.")
    if runs > policy.max_sweep_runs:
        raise AdapterError(
            f"A sweep is at most {policy.max_sweep_runs} runs in this studio; you asked for {runs}"
            + (f" ({grid})" if grid else "")
            + ". Pick fewer bottlenecks or learning rates."
        )


def check_config(studio: Service, config: TrainConfig) -> list[str]:
    """One run's settings against the policy: refused, or clamped with a note."""
    policy = studio.policy
    config.check()  # types and ranges first, so the messages below compare numbers
    config.name = check_name(config.name)
    notes = _clamp_length(studio, config)
    _check_limits(studio, config)
    if config.init_from and not Path(config.init_from).resolve().is_relative_to(studio.library.root.resolve()):
        raise AdapterError("A run continues only an adapter of your library; pick it by name.")
    cap_run(policy, config)
    if hardware().kind == "zero-gpu":  # the trainer takes no step itself (cpu_slices): its process stays off CUDA
        if config.mode == "full":  # the whole model is no slice's argument: it would train in this process
            raise AdapterError(
                "A full fine-tune cannot run on ZeroGPU: its GPU is lent only in short calls, and a full "
                "fine-tune would train the whole model here instead. Train an adapter or the head alone, "
                "or host the studio on a dedicated GPU or the CPU."
            )
        config.device = "cpu"
    return notes


def _check_limits(studio: Service, config: TrainConfig) -> None:
    """The bounds a setting's declaration puts on it in this studio: a Policy limit it may not exceed (the
    bottleneck's as the width it gives on this base), and the choices a public studio offers."""
    policy = studio.policy
    for s in training_settings().values():
        value = config_value(config, s)
        if s.name == "bottleneck":
            value = config.adapter.bottleneck_for(studio.model_info(config.base).hidden_size)
        limit = getattr(policy, s.limit) if s.limit else None
        if limit is not None and value is not None and value > limit:
            raise AdapterError(f"{s.title} {_shown(value)} is over this studio's limit of {_shown(limit)}.")
        if policy.public and s.public_choices and value not in s.public_choices:
            raise AdapterError(
                f"{s.title} must be one of {', '.join(s.public_choices)} in this public studio; got {str(value)[:20]!r}."
            )


def _shown(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _check_data(studio: Service, config: TrainConfig) -> None:
    policy = studio.policy  # data errors now, not in the queue; a file over the limits before it is validated
    limit = studio.data_bytes_limit(config.data)
    data = load_data(config.data, config.task, config.columns, limit, max_rows=policy.max_data_rows)
    if len(data.labels or []) > studio.policy.max_labels:
        raise AdapterError(
            f"The file has {len(data.labels)} labels; this studio trains at most {studio.policy.max_labels}."
        )


def _clamp_length(studio: Service, config: TrainConfig) -> list[str]:
    info = studio.model_info(config.base)  # also checks the model is allowed
    limit = min(policy_max := studio.policy.max_length, info.max_positions or policy_max)
    if config.max_length <= limit:
        return []
    asked, config.max_length = config.max_length, limit
    return [f"Max length {asked} is more than {info.name} can take; training uses {limit}."]


def _check_shares(studio: Service, owner: str | None, runs: int = 1, sweep: bool = False) -> None:
    """Room in the studio's queue for `runs` more runs, and in `owner`'s share for one more (a sweep
    counts as one, and an owner runs one sweep at a time)."""
    policy, jobs = studio.policy, studio.jobs
    if jobs.active_count() + runs > policy.max_queue:
        if runs == 1:
            raise AdapterError(
                f"The studio's training queue is full ({policy.max_queue} runs). Try again in a few minutes."
            )
        raise AdapterError(
            f"The studio's training queue has room for {max(0, policy.max_queue - jobs.active_count())} more runs; "
            f"this sweep is {runs}. Try again in a few minutes, or pick fewer."
        )
    if owner is None:
        return
    slots, sweeps = owner_slots(studio, owner)
    if sweep and sweeps:
        raise AdapterError("You already have a sweep queued or running; wait for it to finish, or stop it.")
    if slots >= policy.max_jobs_per_owner:
        raise AdapterError(
            f"You already have {slots} runs queued or running (the limit is {policy.max_jobs_per_owner}"
            + ("; a sweep counts as one" if sweeps else "")
            + "). Wait for one to finish, or stop it."
        )
    _check_address(studio, owner, runs)
    _check_anonymous_pool(studio, owner, runs)
    _check_runs_disk(studio)
    check_library_room(studio, owner)


def _active(studio: Service) -> list:
    return [j for j in studio.jobs.jobs() if j.status in ACTIVE]


def _check_address(studio: Service, owner: str, runs: int) -> None:
    """One client address holds at most a fair share of the queue, however many identities it uses."""
    address = address_of(owner)
    if address is None:
        return
    limit = studio.policy.share(studio.policy.max_queue)
    held = sum(1 for j in _active(studio) if address_of(j.owner) == address or j.share == address)
    if held + runs > limit:
        raise AdapterError(
            f"Your network already has {held} runs queued or running in this studio (the limit per address "
            f"is {limit}, a fair share of the queue). Wait for one to finish."
        )


def _check_anonymous_pool(studio: Service, owner: str, runs: int) -> None:
    """Visitors who are not signed in share a small pool of the queue, one fair share of it per address."""
    policy = studio.policy
    if policy.signed_in(owner):
        return
    pool = [j for j in _active(studio) if not policy.signed_in(j.owner)]
    address = address_of(owner)
    mine = [j for j in pool if address is not None and address_of(j.owner) == address]
    if len(pool) + runs > policy.anonymous_pool or len(mine) + runs > policy.share(policy.anonymous_pool):
        raise AdapterError(
            f"The places for visitors who are not signed in ({policy.anonymous_pool} runs, shared) are taken. "
            "Sign in with Hugging Face to train in the main queue, or try again in a few minutes."
        )


def _check_runs_disk(studio: Service) -> None:
    policy = studio.policy
    if policy.public and folder_bytes(studio.jobs.store.root) >= policy.max_runs_bytes:
        log.warning("The runs folder is over its cap of %d bytes: new runs are refused.", policy.max_runs_bytes)
        raise AdapterError(
            f"The studio's disk for runs is full ({policy.max_runs_bytes / 2**30:.0f} GB). Try again later; "
            "the operator has been told in the log."
        )


def owner_slots(studio: Service, owner: str) -> tuple[int, int]:
    """(runs counted against `owner`'s limit, sweeps among them): each active run alone, each active
    sweep once however many of its runs wait."""
    active = [j for j in studio.jobs.jobs(owner=owner) if j.status in ACTIVE]
    groups = {j.group for j in active if getattr(j, "group", None)}
    return sum(1 for j in active if not getattr(j, "group", None)) + len(groups), len(groups)


def check_library_room(studio: Service, owner: str, incoming: int = 1, adapters: int = 1) -> None:
    """Room in `owner`'s library for `adapters` more (a run in progress counts as one) of `incoming`
    bytes in all: an upload's size, or at least one byte for a run whose adapter does not exist yet."""
    policy = studio.policy
    count, size = studio.library.usage(owner)
    taken = count + owner_slots(studio, owner)[0]
    if taken + adapters > policy.max_adapters_per_owner:
        if adapters == 1:
            raise AdapterError(
                f"Your library is full ({count} adapters, the limit is {policy.max_adapters_per_owner}). "
                "Delete one first."
            )
        raise AdapterError(
            f"These are {adapters} adapters; your library has room for {max(0, policy.max_adapters_per_owner - taken)} "
            f"more (the limit is {policy.max_adapters_per_owner}). Delete some first."
        )
    if size + incoming > policy.max_bytes_per_owner:
        adds = f"; this adds {incoming / 2**20:.1f} MB" if incoming > 2**20 else ""
        raise AdapterError(
            f"Your adapters take {size / 2**20:.0f} MB{adds}; the limit is {policy.max_bytes_per_owner / 2**20:.0f} MB. "
            "Delete one first."
        )
    total_count, total_size = studio.library.total_usage()
    if total_count + adapters > policy.max_library_adapters or total_size + incoming > policy.max_library_bytes:
        log.warning(
            "The library is at its cap (%d adapters, %d bytes): additions are refused.", total_count, total_size
        )
        raise AdapterError(
            "The studio's library is full for now (all visitors' adapters together). Try again later; "
            "the operator has been told in the log."
        )


def library_room(studio: Service, owner: str) -> int:
    """The bytes `owner` may still add: their own room, within the studio's."""
    policy = studio.policy
    own = policy.max_bytes_per_owner - studio.library.usage(owner)[1]
    return max(0, min(own, policy.max_library_bytes - studio.library.total_usage()[1]))
