"""Background training: a queue, one run at a time per device, stop flags, and an event history.

Callers (the studio, tests) poll `Job.events`; nothing here blocks the caller or knows of the UI.
Every job has an owner (None in local mode, who sees every job); an owner sees only their own jobs.
Jobs may belong to a `group`: a sweep's runs, which `sweeps` (the sweep executor) queues, follows and
ranks, publishing the best through `publish_best` when the last of them ends.
The queue is fair: oldest first, except that a job whose `share` (a client address, else its owner) was
served less recently goes before one served more recently, so no share holds the trainer turn after turn.
The worker thread outlives any failure of a run or of its own bookkeeping (a full disk, say), and keeps
the base it last loaded for the next adapter or head run on the same base and device.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Base, load_base
from ..errors import AdapterError
from .leases import SliceBroker
from .runs import ACTIVE, Run, RunRecorder, RunStore, visible
from .sweep_executor import Publish, SweepExecutor
from .train import Event, TrainConfig, train

UNEXPECTED = "The run failed on the server; details are in the run's error.log."
UNEXPECTED_UNLOGGED = "The run failed on the server; details are in the server's log."
ABORTED = "Aborted before the run finished; its adapter is the last one it saved, if any."
KEEP_FINISHED = 200
log = logging.getLogger("adapter_studio")


@dataclass
class Job:
    config: TrainConfig
    run: Run
    status: str = "queued"  # queued | loading | training | completed | stopped | failed | cancelled
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    owner: str | None = None  # None: local mode
    group: str | None = None  # the jobs queued together (a sweep), if any
    resume: bool = False  # go on from the run's checkpoint
    exception: BaseException | None = None  # what made it fail, for a caller in this process (the CLI)
    share: str | None = None  # whose turn this run takes in the fair queue (a client address); default: owner
    cpu_when_away: bool = False  # a slice no request of its owner runs (gone, out of quota) runs on the CPU

    @property
    def id(self) -> str:
        return self.run.id

    def latest(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["kind"] == kind), None)


class JobManager:
    def __init__(
        self,
        store: RunStore | None = None,
        on_finish: Callable[[Job], None] | None = None,
        on_event: Callable[[Job, Event], None] | None = None,
        publish_best: Publish | None = None,
        leases: SliceBroker | None = None,
    ):
        """`on_finish`: called as each run ends; `on_event`: each event of each run, as it happens;
        `publish_best`: a sweep's publish step (see `sweep_executor`). Sweeps an earlier process left
        running are finished here, once their runs have all ended."""
        self.store = store or RunStore()
        self.on_finish = on_finish
        self.on_event = on_event
        self.leases = leases  # set: runs train in slices that their owners' requests run (ZeroGPU)
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._served: dict[Any, float] = {}  # share -> when its last run started
        self._cond = threading.Condition()
        self._closed = False
        self._holds = 0  # blocks queuing several runs as one (see `holding`)
        self._aborting = False
        self._base: tuple[tuple[str, str], Base] | None = None  # ((base, device), the loaded base): the worker's
        self.sweeps = SweepExecutor(self, publish_best)
        self._worker = threading.Thread(target=self._work, name="adapter-studio-trainer", daemon=True)
        self._worker.start()
        # Let the trainer thread finish before the interpreter tears down: a thread that ran torch ops
        # and is still alive then can abort the process ("terminate called without an active exception").
        atexit.register(self.close)
        try:
            self.sweeps.reload()
        except Exception:  # an unreadable sweeps folder must not keep the trainer from starting
            log.exception("Cannot finish the sweeps an earlier process left")

    def close(self, timeout: float | None = 120) -> None:
        """Shut the worker down: queued runs are cancelled, a running one stops after its current step
        (its adapter is saved, as with `stop`), and the worker thread ends."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            while self._queue:
                self._finish(self._queue.popleft(), "cancelled", "Cancelled: the trainer shut down first.")
            running = self.running()
            if running is not None:
                running.stop_requested.set()
            self._cond.notify_all()
        self._base = None
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)

    def abort(self, timeout: float | None = 120) -> None:
        """Shut down at once: as `close`, but a running run ends after its current step without the
        evaluation and save of a stop (it fails, keeping the adapter it saved last)."""
        self._aborting = True
        self.close(timeout)

    def submit(
        self,
        config: TrainConfig,
        owner: str | None = None,
        group: str | None = None,
        share: str | None = None,
        cpu_when_away: bool = False,
    ) -> Job:
        """Queue a run for `owner` (in `group`, if given; taking `share`'s turns, if given); it starts when
        the device is free. Bad settings fail here, not later."""
        config.check()
        if self._closed:
            raise AdapterError("The trainer has shut down; start a new JobManager to train again.")
        try:
            run = self.store.create(config.name, config.to_dict(), owner=owner, group=group)
        except OSError:
            log.exception("Cannot create a run folder")
            raise AdapterError("The server could not save a new run (is its disk full?). Try again later.") from None
        return self._queue_job(Job(config, run, owner=owner, group=group, share=share, cpu_when_away=cpu_when_away))

    def resume(
        self, run_id: str, owner: str | None = None, share: str | None = None, cpu_when_away: bool = False
    ) -> Job:
        """Queue a stopped or interrupted run of `owner` to go on from its checkpoint, in its own folder."""
        run = self.store.get(run_id, owner)
        if self.busy(run):
            raise AdapterError(f"The run {run.id!r} is already queued or training.")
        if not run.resumable:
            raise AdapterError(
                f"The run {run.id!r} has no checkpoint to resume: it finished, or stopped before its first "
                "evaluation. Start it again instead."
            )
        config = run.train_config()
        config.check()
        if self._closed:
            raise AdapterError("The trainer has shut down; start a new JobManager to train again.")
        group = run.status().get("group")
        run.set_status("queued", message=None, finished=None)
        # The curve so far, up to the checkpoint: the resumed run's own events carry on from there.
        until = run.checkpoint_step or 0
        history = [e for e in run.events() if e["kind"] in ("step", "eval") and e.get("step", until + 1) <= until]
        job = Job(config, run, events=history, owner=owner, group=group, resume=True, share=share)
        job.cpu_when_away = cpu_when_away
        return self._queue_job(job)

    def busy(self, run: Run) -> bool:
        """Whether a job of this process is queued or training in `run`'s folder."""
        return any(j.run.dir == run.dir and not j.finished.is_set() for j in self.jobs())

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Queue several runs as one: the worker starts no queued run until the block ends (the one
        running goes on). A sweep queues its runs so, and a run that fails then always finds the rest
        queued, to be cancelled, never some of them not yet submitted."""
        with self._cond:
            self._holds += 1
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._cond.notify_all()

    def _queue_job(self, job: Job) -> Job:
        with self._cond:
            self._forget_old()
            self._jobs[job.id] = job
            self._queue.append(job)
            self._cond.notify()
        return job

    def _forget_old(self) -> None:
        """Keep the events of at most KEEP_FINISHED finished jobs in memory (a long-lived public
        studio would otherwise grow without bound); their runs stay on disk as past runs."""
        finished = [j for j in self._jobs.values() if j.finished.is_set()]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def stop(self, job_id: str, owner: str | None = None) -> None:
        """Cancel a queued run, or end a running one after its current step (its adapter is kept)."""
        job = self.get(job_id, owner)
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, "cancelled", "Cancelled before it started.")
                return
        job.stop_requested.set()

    def find(self, job_id: str) -> Job | None:
        """The job `job_id` of this process, whoever's it is (None: not here, or forgotten)."""
        return self._jobs.get(job_id) if isinstance(job_id, str) else None

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job `job_id`, if `owner` may see it; otherwise the same error as for a job that does not exist."""
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None or not visible(job.owner, owner):
            raise AdapterError(f"No job {str(job_id)[:100]!r} for you.")
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        with self._cond:
            return [j for j in self._jobs.values() if visible(j.owner, owner)]

    def queued(self, owner: str | None = None) -> list[Job]:
        """Queued jobs in the order they will start."""
        with self._cond:
            return [j for j in self._in_turn() if visible(j.owner, owner)]

    def _in_turn(self) -> list[Job]:
        """The queue in the order it will run: the job whose share was served longest ago (never, first),
        and among equals the oldest."""
        served, waiting, order = dict(self._served), list(self._queue), []
        clock = max(served.values(), default=0.0)
        while waiting:
            job = min(waiting, key=lambda j: served.get(_share(j), -1.0))  # min keeps the first of equals
            waiting.remove(job)
            order.append(job)
            clock += 1.0
            served[_share(job)] = clock
        return order

    def _next(self) -> Job:
        job = self._in_turn()[0]
        self._queue.remove(job)
        self._served[_share(job)] = time.monotonic()
        if len(self._served) > 4 * KEEP_FINISHED:  # forget shares with nothing queued
            waiting = {_share(j) for j in self._queue}
            self._served = {k: v for k, v in self._served.items() if k in waiting or k == _share(job)}
        return job

    def running(self, owner: str | None = None) -> Job | None:
        with self._cond:
            return next(
                (j for j in self._jobs.values() if j.status in ("loading", "training") and visible(j.owner, owner)),
                None,
            )

    def active_count(self, owner: str | None = None) -> int:
        """Queued and running jobs of `owner` (of everyone, for None): what a quota counts."""
        with self._cond:
            return sum(1 for j in self._jobs.values() if j.status in ACTIVE and visible(j.owner, owner))

    def wait(self, job_id: str, timeout: float | None = None, owner: str | None = None) -> Job:
        job = self.get(job_id, owner)
        job.finished.wait(timeout)
        return job

    def _work(self) -> None:
        while True:
            with self._cond:
                while (not self._queue or self._holds) and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._next()
                job.status = "loading"
            try:
                self._run(job)
            except BaseException:  # the bookkeeping itself failed (a full disk, say): record what we can, go on
                log.exception("Run %s: the trainer's bookkeeping failed", job.id)
                if job.status in ACTIVE:
                    job.status, job.error = "failed", UNEXPECTED_UNLOGGED
                    job.events.append({"kind": "done", "status": "failed", "message": job.error, "time": time.time()})
            finally:
                job.finished.set()

    def _run(self, job: Job) -> None:
        record = RunRecorder(job.run)

        def on_event(event: Event) -> None:
            data = event.to_dict()
            job.events.append(data)
            record(data)
            if event.kind == "status" and event.status:
                job.status = event.status
            if self.on_event is not None:
                try:
                    self.on_event(job, event)
                except Exception:  # a listener must not fail the run
                    log.exception("Run %s: on_event failed", job.id)

        def should_stop() -> bool:
            if self._aborting:
                raise AdapterError(ABORTED)
            return job.stop_requested.is_set()

        fields: dict[str, Any] = {}
        try:
            job.run.set_status("loading", started=time.time())
            base = self._shared_base(job.config)
            lease = None
            if self.leases is not None:
                broker = self.leases
                lease = lambda spec: broker.lease(job.owner, spec, should_stop, job.cpu_when_away)  # noqa: E731
            result = train(job.config, job.run.dir, on_event, should_stop, base=base, resume=job.resume, lease=lease)
        except AdapterError as e:
            status, message, job.exception = "failed", str(e), e
        except Exception as e:  # any other failure is the server's: the details go to error.log, not to the user
            job.exception = e
            self._base = None  # in whatever state the failure left it
            log.exception("Run %s failed", job.id)
            status, message = "failed", UNEXPECTED
            try:
                (job.run.dir / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
            except OSError:
                log.exception("Run %s: cannot write error.log", job.id)
                message = UNEXPECTED_UNLOGGED
        else:
            status, message = result.status, result.paused
            fields = dict(
                metrics=result.metrics,
                steps=result.steps,
                train_seconds=result.train_seconds,
                examples_per_sec=result.examples_per_sec,
            )
        self._finish(job, status, message, **fields)

    def _shared_base(self, config: TrainConfig) -> Base | None:
        """The loaded base for an adapter or head run: the one kept from the last run when it is the same
        base on the same device, else loaded now (and kept). A full fine-tune loads its own: None."""
        if config.mode == "full":
            self._base = None  # a full fine-tune needs the memory, and changes a base of its own
            return None
        key = (config.base, config.device)
        if self._base is None or self._base[0] != key:
            self._base = None  # at most one base in memory: let the old one go before loading the next
            self._base = (key, load_base(config.base))
        return self._base[1]

    def _finish(self, job: Job, status: str, message: str | None, **fields: Any) -> None:
        job.status, job.error = status, message if status == "failed" else None
        try:
            job.run.set_status(status, message=message, finished=time.time(), **fields)
        except Exception:  # the job still ends, in memory at least
            log.exception("Run %s: cannot save its final status %r", job.id, status)
        if not job.events or job.events[-1]["kind"] != "done":
            job.events.append({"kind": "done", "status": status, "message": message, "time": time.time()})
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception as e:  # publishing must not take the worker down
                log.exception("Run %s: on_finish failed", job.id)
                text = str(e) if isinstance(e, AdapterError) else "publishing it failed on the server."
                job.events.append({"kind": "error", "message": f"After the run: {text}", "time": time.time()})
        if job.group is not None:  # after on_finish: the caller sees a sweep's member end before the sweep
            try:
                self.sweeps.member_ended(job)
            except Exception:
                log.exception("Run %s: its sweep's bookkeeping failed", job.id)
        job.finished.set()


def _share(job: Job) -> Any:
    return job.share if job.share is not None else job.owner
