"""The one sweep executor (the CLI's, the library's and the studio's): a grid of runs queued on the
`JobManager` as one group, its record kept beside the runs (`sweep_store`), and, when the last run
ends, the runs ranked by the validation metric and the best handed to the caller's publish step once.

The job manager reuses its loaded base between consecutive runs of one base, so a sweep of N runs costs
N trainings, not N loads. On start-up (`reload`) a sweep left running by an earlier process is finished:
its runs that were active then read as interrupted (see `runs`), so once every run has ended the best
of those that finished is chosen and published.

Exactly once: the end is claimed under a lock after re-reading the record from disk, so neither two
threads nor a second manager over the same folder publish a sweep twice. A process that dies between
publishing and saving the record publishes again after its restart (that window is one file write).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import AdapterError
from . import runs
from .metrics import RANK_METRIC, rank_key
from .runs import ACTIVE, Run, RunStore, visible
from .sweep_store import ENDED, SweepRecord, SweepStore, new_sweep_id

if TYPE_CHECKING:
    from .config import TrainConfig

# The publish step: given the sweep and its best run, put the best adapter where the caller keeps its
# adapters and say where (the studio: `<name>-best` in its library; the CLI: OUT/best).
Publish = Callable[[SweepRecord, Run], "str | None"]
log = logging.getLogger("adapter_studio")


class Jobs(Protocol):
    """What the executor uses of the `JobManager` that owns it (jobs.py imports this module, not back)."""

    store: RunStore

    def submit(
        self, config: TrainConfig, owner: str | None = None, group: str | None = None, share: str | None = None
    ) -> Any: ...
    def stop(self, job_id: str, owner: str | None = None) -> None: ...
    def find(self, job_id: str) -> Any: ...


class SweepExecutor:
    def __init__(self, jobs: Jobs, publish: Publish | None = None):
        self.jobs = jobs
        self.store = SweepStore(jobs.store.root)
        self.publish = publish
        self._records: dict[str, SweepRecord] = {}
        self._done: dict[str, threading.Event] = {}
        self._ending: set[str] = set()
        # Never held while taking the job manager's lock (which may be held while a run ends here).
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()

    # Starting and stopping -----------------------------------------------------------------------------
    def submit(
        self,
        configs: list[TrainConfig],
        name: str,
        owner: str | None = None,
        stop_on_failure: bool = False,
        share: str | None = None,
    ) -> SweepRecord:
        """Queue `configs` (see `sweep.sweep_configs`) for `owner` as one sweep named `name`, its runs taking
        `share`'s turns in the fair queue (see `jobs`). With `stop_on_failure`, a run that fails cancels the
        rest. Bad settings fail here, before any run."""
        if not configs:
            raise AdapterError("The sweep has no runs.")
        bases, tasks = {c.base for c in configs}, {c.task for c in configs}
        if len(bases) > 1 or len(tasks) > 1:
            raise AdapterError(
                f"A sweep shares one base and one task; got bases {sorted(bases)}, tasks {sorted(tasks)}."
            )
        for config in configs:
            config.check()
        task = configs[0].task
        record = SweepRecord(
            new_sweep_id(name), name, owner, task, RANK_METRIC[task], len(configs),
            stop_on_failure=stop_on_failure, boot=runs.BOOT_ID,
        )  # fmt: skip
        with self._lock:
            self._records[record.id] = record
            self._done[record.id] = threading.Event()
        self._save(record)
        with self.jobs.holding():  # the worker starts none of them until all are queued
            try:
                for config in configs:
                    record.run_ids.append(self.jobs.submit(config, owner=owner, group=record.id, share=share).id)
            except BaseException:  # the sweep is what was queued, and that is cancelled
                record.expected = len(record.run_ids)
                self._halt(record)
                raise
            finally:
                self._save(record)
        self._check(record)  # (every run may have ended already)
        return record

    def stop(self, sweep_id: str, owner: str | None = None) -> int:
        """Cancel the sweep's queued runs and stop its running one after its current step (it keeps what
        it learned); the best of what ended is still published. Returns how many runs it stopped."""
        record = self.get(sweep_id, owner)
        live = self._live(record)
        if live:
            record.stopped = True
            self._save(record)
        self._halt(record)
        return len(live)

    def member_ended(self, job: Any) -> None:
        """The job manager's call as each run of a group ends: the sweep ends with its last run."""
        record = self.find(job.group) if job.group else None
        if record is None or record.ended:
            return
        if job.status == "failed" and record.stop_on_failure:
            self._halt(record)
        self._check(record)

    def reload(self) -> None:
        """On start-up: finish each sweep an earlier process left running whose runs have all ended."""
        for saved in self.store.all():
            if saved.ended:
                continue
            if saved.boot != runs.BOOT_ID and len(saved.run_ids) < saved.expected:
                saved.expected = len(saved.run_ids)  # it died while queuing: what it queued is the sweep
            with self._lock:
                record = self._records.setdefault(saved.id, saved)
            self._check(record)

    def _live(self, record: SweepRecord) -> list[Any]:
        jobs = [self.jobs.find(run_id) for run_id in record.run_ids]
        return [j for j in jobs if j is not None and j.status in ACTIVE]

    def _halt(self, record: SweepRecord) -> None:
        # Queued runs first: once the running one ends, the worker would start the next.
        for job in sorted(self._live(record), key=lambda j: j.status != "queued"):
            self.jobs.stop(job.id)

    # Ending -------------------------------------------------------------------------------------------
    def _check(self, record: SweepRecord) -> None:
        with self._lock:
            if record.ended or record.id in self._ending or len(record.run_ids) < record.expected:
                return
            saved = self.store.load(record.id)
            if saved is not None and saved.ended:  # another manager over the same folder ended it
                record.__dict__.update(saved.__dict__)
                self._event(record.id).set()
                return
            statuses = {run_id: self._status(run_id) for run_id in record.run_ids}
            if any(s.get("status") in ACTIVE for s in statuses.values()):
                return
            self._ending.add(record.id)
        try:
            self._end(record, statuses)
        finally:
            with self._lock:
                self._ending.discard(record.id)
                self._event(record.id).set()

    def _end(self, record: SweepRecord, statuses: dict[str, dict[str, Any]]) -> None:
        """Rank the runs that finished with an adapter, publish the best, and save the record ended."""
        ranked = [
            run_id
            for run_id, s in statuses.items()
            if s.get("status") in ("completed", "stopped") and _metrics(s) and self._run(run_id).has_adapter
        ]
        ranked.sort(key=lambda run_id: rank_key(record.task, _metrics(statuses[run_id])))
        if ranked:
            best = self._run(ranked[0])
            record.best, record.best_name = best.id, best.config().get("name") or best.id
            if self.publish is not None:
                try:
                    record.published = self.publish(record, best)
                except Exception as e:  # the sweep has ended all the same; the record says why its best is not out
                    log.exception("Sweep %s: publishing its best run failed", record.id)
                    record.error = str(e) if isinstance(e, AdapterError) else "publishing it failed on the server."
        record.state, record.ended_at = ENDED, time.time()
        self._save(record)

    # Reading --------------------------------------------------------------------------------------------
    def get(self, sweep_id: str, owner: str | None = None) -> SweepRecord:
        """The sweep `sweep_id`, if `owner` may see it; otherwise the same error as for one that does not exist."""
        record = self.find(sweep_id)
        if record is None or not visible(record.owner, owner):
            raise AdapterError(f"No sweep {str(sweep_id)[:100]!r} for you.")
        return record

    def latest(self, owner: str | None = None) -> SweepRecord | None:
        """`owner`'s newest sweep, kept across restarts (None: they have none)."""
        mine = [self.find(r.id) or r for r in self.store.all() if visible(r.owner, owner)]
        return max(mine, key=lambda r: r.created, default=None)

    def wait(self, sweep_id: str, timeout: float | None = None) -> bool:
        """Wait until the sweep has ended and its best is published; whether it has."""
        record = self.find(sweep_id)
        return record is not None and (record.ended or self._event(sweep_id).wait(timeout))

    def members(self, record: SweepRecord) -> list[dict[str, Any]]:
        """The sweep's runs in grid order: name, grid values, status, metrics, steps, time and adapter folder."""
        rows = []
        for run_id in record.run_ids:
            run, status = self._run(run_id), self._status(run_id)
            config = run.config()
            adapter = config.get("adapter") if isinstance(config.get("adapter"), dict) else {}
            rows.append({
                "id": run_id,
                "name": config.get("name") or run_id,
                "bottleneck": adapter.get("bottleneck"),
                "lr": config.get("lr"),
                "placement": adapter.get("placement"),
                "status": status.get("status"),
                "metrics": _metrics(status),
                "steps": status.get("steps"),
                "train_seconds": status.get("train_seconds"),
                "trainable": status.get("trainable"),
                "stopped_early": bool(status.get("stopped_early")),
                "adapter_dir": str(run.adapter_dir),
            })  # fmt: skip
        return rows

    def find(self, sweep_id: str | None) -> SweepRecord | None:
        """The sweep `sweep_id`, whoever's it is (None: there is none; `sweep_id` may be a group of no sweep)."""
        if not isinstance(sweep_id, str):
            return None
        with self._lock:
            if sweep_id in self._records:
                return self._records[sweep_id]
        saved = self.store.load(sweep_id)
        if saved is None:
            return None
        with self._lock:
            return self._records.setdefault(sweep_id, saved)

    def _event(self, sweep_id: str) -> threading.Event:
        return self._done.setdefault(sweep_id, threading.Event())

    def _run(self, run_id: str) -> Run:
        return Run(self.jobs.store.root / run_id)

    def _status(self, run_id: str) -> dict[str, Any]:
        """The run's saved status; a run of this process goes by its job, which is ahead of the disk."""
        status = self._run(run_id).status()
        job = self.jobs.find(run_id)
        return {**status, "status": job.status} if job is not None else status

    def _save(self, record: SweepRecord) -> None:
        with self._save_lock:
            self.store.save(record)


def _metrics(status: dict[str, Any]) -> dict[str, float]:
    metrics = status.get("metrics")
    return metrics if isinstance(metrics, dict) else {}
