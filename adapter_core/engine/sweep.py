"""A sweep: a small grid of runs (bottleneck x learning rate, optionally placement), each stopping
early, ranked by the validation metric.

`sweep_configs` makes the grid. The runs go through the one sweep executor (`sweep_executor`, on the
`JobManager`), which trains them one after another on one loaded base: each run adds its adapter to it
and takes it off again, so a sweep of N runs costs N trainings, not N loads. `run_sweep` is that
executor in this process, waiting for the sweep (the CLI's, the notebooks' and the benchmarks'). The
best run's adapter stays in its run folder; publishing it (the studio's library, the CLI's `--out/best`)
is the caller's step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import AdapterConfig
from ..errors import AdapterError
from ..inject import check_adapter_name
from .config import Event, TrainConfig
from .jobs import Job, JobManager
from .metrics import RANK_METRIC, rank_key
from .runs import RunStore
from .sweep_executor import Publish, SweepExecutor
from .sweep_store import SweepRecord

METRIC = RANK_METRIC  # what a sweep ranks runs by


def lr_tag(lr: float) -> str:
    """A learning rate as a short name part that adapter names allow (no dots): 1e-3, 2.5e-4 -> 2p5e-4."""
    mantissa, exponent = f"{lr:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".").replace(".", "p")
    return f"{mantissa}e{int(exponent)}"


def sweep_configs(
    base_config: TrainConfig,
    bottlenecks: list[int],
    lrs: list[float],
    placements: list[str] | None = None,
    patience: int = 2,
) -> list[TrainConfig]:
    """One config per (placement, bottleneck, learning rate) of the grid, named
    `{name}-r{r}-lr{lr}` (+ `-{placement}` when placements are given), early stopping after `patience`
    evaluations without a better validation metric. Everything else is `base_config`'s."""
    if not bottlenecks or not lrs:
        raise AdapterError("A sweep needs at least one bottleneck and one learning rate.")
    if placements is not None and not placements:
        raise AdapterError("Give at least one placement, or none to keep the base config's.")
    if not (isinstance(patience, int) and not isinstance(patience, bool) and patience >= 1):
        raise AdapterError(f"patience must be a whole number of evaluations, 1 or more; got {patience!r}.")
    if base_config.mode != "adapter":
        raise AdapterError(f"A sweep varies the adapter; mode must be 'adapter', got {base_config.mode!r}.")
    configs = []
    for placement in placements or [None]:
        for r in bottlenecks:
            for lr in lrs:
                if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                    raise AdapterError(f"Learning rates must be positive numbers; got {lr!r}.")
                name = f"{base_config.name}-r{r}-lr{lr_tag(lr)}" + (f"-{placement}" if placement else "")
                check_adapter_name(name)
                adapter = _grid_adapter(base_config.adapter, r, placement)
                config = replace(
                    base_config, name=name, adapter=adapter, lr=float(lr), early_stopping_patience=patience
                )
                config.check()  # a bad bottleneck or placement fails before any run starts
                configs.append(config)
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise AdapterError(f"The grid repeats a run: {sorted({n for n in names if names.count(n) > 1})}.")
    return configs


def _grid_adapter(adapter: AdapterConfig, bottleneck: int, placement: str | None) -> AdapterConfig:
    """`adapter` at width `bottleneck` (and `placement`). A scaling left at its placement's default
    follows the new placement's default (a parallel adapter is scaled by 4, a serial one by 1)."""
    if placement is None or placement == adapter.placement:
        return replace(adapter, bottleneck=bottleneck, reduction_factor=None)
    default = AdapterConfig(placement=adapter.placement).scaling
    scaling = None if adapter.scaling == default else adapter.scaling
    return replace(adapter, bottleneck=bottleneck, reduction_factor=None, placement=placement, scaling=scaling)


@dataclass
class SweepResult:
    """The runs that ran, best first by `metric`, and where the best one's adapter is."""

    status: str  # completed | stopped (a stop request ended the sweep before its last run)
    metric: str  # accuracy (higher is better) | val_loss (lower is better)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows and self.rows[0]["metrics"] else None

    @property
    def best_adapter_dir(self) -> Path | None:
        return Path(self.best["adapter_dir"]) if self.best else None


def run_sweep(
    configs: list[TrainConfig],
    out_dir: str | Path,
    on_event: Callable[[Event], None] = lambda e: None,
    should_stop: Callable[[], bool] = lambda: False,
    name: str | None = None,
    publish: Publish | None = None,
) -> SweepResult:
    """Train `configs` (see `sweep_configs`) as one sweep in this process, each in `out_dir/<config.name>`
    (the sweep's record in `out_dir/sweeps/`), and rank them. Each run's events reach `on_event` with
    `info["sweep_run"]` (its name) and `info["sweep_index"]`/`["sweep_total"]`. A stop request (or
    Ctrl-C) stops the current run (it keeps what it learned) and the sweep; a failed run ends the sweep
    and its error is raised here. `publish` gets the best run once the sweep has ended."""
    index = {c.name: i for i, c in enumerate(configs)}
    sweep: list[str] = []  # its id, once queued; emptied once it is told to stop

    def stop_if_asked() -> None:
        if sweep and should_stop():
            with contextlib.suppress(IndexError):  # the other thread told it first
                manager.sweeps.stop(sweep.pop())

    def forward(job: Job, event: Event) -> None:
        tag = {"sweep_run": job.config.name, "sweep_index": index.get(job.config.name), "sweep_total": len(configs)}
        event.info = {**(event.info or {}), **tag}
        on_event(event)
        stop_if_asked()  # from the run's own thread: it stops at this very step

    manager = JobManager(RunStore(root=out_dir), on_event=forward, publish_best=publish)
    try:
        record = manager.sweeps.submit(configs, name or Path(out_dir).name or "sweep", stop_on_failure=True)
        sweep.append(record.id)
        while not manager.sweeps.wait(record.id, 0.1):
            stop_if_asked()
    except KeyboardInterrupt:  # a second Ctrl-C (the first is the caller's `should_stop`): out at once
        manager.abort()
        raise
    finally:
        manager.close()
    return sweep_result(manager.sweeps, record)


def sweep_result(sweeps: SweepExecutor, record: SweepRecord) -> SweepResult:
    """An ended sweep's runs that ran, best first; a run that failed raises its error."""
    for member in record.run_ids:
        job = sweeps.jobs.find(member)
        if job is not None and job.status == "failed" and job.exception is not None:
            raise job.exception
    rows = [_row(m) for m in sweeps.members(record) if m["status"] != "cancelled"]
    rows.sort(key=lambda row: rank_key(record.task, row["metrics"]))
    return SweepResult("stopped" if record.stopped else "completed", record.metric, rows)


def _row(member: dict[str, Any]) -> dict[str, Any]:
    metrics = member["metrics"]
    seconds = member["train_seconds"]
    return {
        **{k: member[k] for k in ("name", "bottleneck", "lr", "placement", "metrics")},
        **{k: metrics.get(k) for k in ("accuracy", "macro_f1", "val_loss", "perplexity") if k in metrics},
        "steps": member["steps"] or 0,
        "train_seconds": round(seconds, 2) if isinstance(seconds, (int, float)) else 0.0,
        "trainable": member["trainable"] or 0,
        "stopped_early": member["stopped_early"],
        "status": member["status"],
        "adapter_dir": member["adapter_dir"],
    }


def format_table(result: SweepResult) -> str:
    """The ranked runs as plain text (the CLI's)."""
    shown = ("accuracy", "macro_f1") if result.metric == "accuracy" else ("val_loss", "perplexity")
    width = max([4] + [len(r["name"]) for r in result.rows])
    head = f"{'run':<{width}}  {'r':>4}  {'lr':>8}  " + "  ".join(f"{k:>10}" for k in shown)
    lines = [head + f"  {'steps':>6}  {'seconds':>8}  {'trainable':>10}  early"]
    for r in result.rows:
        values = "  ".join(f"{r[k]:10.4f}" if r.get(k) is not None else f"{'-':>10}" for k in shown)
        lines.append(
            f"{r['name']:<{width}}  {r['bottleneck']:>4}  {r['lr']:>8g}  {values}  {r['steps']:>6}  "
            f"{r['train_seconds']:>8.1f}  {r['trainable']:>10,}  {'yes' if r['stopped_early'] else 'no'}"
        )
    return "\n".join(lines)
