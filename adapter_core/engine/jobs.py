"""Background training: a queue, one run at a time per device, stop flags, and an event history.

Callers (the studio, tests) poll `Job.events`; nothing here blocks the caller or knows of the UI.
"""

from __future__ import annotations

import atexit
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AdapterError
from .runs import Run, RunStore
from .train import Event, TrainConfig, train


@dataclass
class Job:
    config: TrainConfig
    run: Run
    status: str = "queued"  # queued | loading | training | completed | stopped | failed | cancelled
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def id(self) -> str:
        return self.run.id

    def latest(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["kind"] == kind), None)


class JobManager:
    def __init__(self, store: RunStore | None = None, on_finish: Callable[[Job], None] | None = None):
        self.store = store or RunStore()
        self.on_finish = on_finish
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="adapter-studio-trainer", daemon=True)
        self._worker.start()
        # Let the trainer thread finish before the interpreter tears down: a thread that ran torch ops
        # and is still alive then can abort the process ("terminate called without an active exception").
        atexit.register(self.close)

    def close(self, timeout: float | None = 120) -> None:
        """Shut the worker down: queued runs are cancelled, a running one stops after its current step
        (its adapter is saved, as with `stop`), and the worker thread ends."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._queue:
                self._finish(self._queue.popleft(), "cancelled", "Cancelled: the trainer shut down first.")
            running = self.running()
            if running is not None:
                running.stop_requested.set()
            self._cond.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)

    def submit(self, config: TrainConfig) -> Job:
        """Queue a run; it starts when the device is free. Bad settings fail here, not later."""
        config.check()
        if self._closed:
            raise AdapterError("The trainer has shut down; start a new JobManager to train again.")
        job = Job(config, self.store.create(config.name, config.to_dict()))
        with self._cond:
            self._jobs[job.id] = job
            self._queue.append(job)
            self._cond.notify()
        return job

    def stop(self, job_id: str) -> None:
        """Cancel a queued run, or end a running one after its current step (its adapter is kept)."""
        job = self.get(job_id)
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, "cancelled", "Cancelled before it started.")
                return
        job.stop_requested.set()

    def get(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise AdapterError(f"No job {job_id!r} in this session.")
        return self._jobs[job_id]

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def queued(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def running(self) -> Job | None:
        return next((j for j in self._jobs.values() if j.status in ("loading", "training")), None)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.get(job_id)
        job.finished.wait(timeout)
        return job

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.status = "loading"
            self._run(job)

    def _run(self, job: Job) -> None:
        def on_event(event: Event) -> None:
            data = event.to_dict()
            job.events.append(data)
            job.run.append_event(data)
            if event.kind == "status" and event.status:
                job.status = event.status
                job.run.set_status(event.status, message=event.message)

        job.run.set_status("loading", started=time.time())
        try:
            result = train(job.config, job.run.dir, on_event, job.stop_requested.is_set)
            self._finish(
                job,
                result.status,
                None,
                metrics=result.metrics,
                steps=result.steps,
                train_seconds=result.train_seconds,
                examples_per_sec=result.examples_per_sec,
            )
        except AdapterError as e:
            self._finish(job, "failed", str(e))
        except Exception as e:  # the worker must survive any run
            (job.run.dir / "error.log").write_text(traceback.format_exc())
            self._finish(job, "failed", f"{type(e).__name__}: {e}")

    def _finish(self, job: Job, status: str, message: str | None, **fields: Any) -> None:
        job.status, job.error = status, message if status == "failed" else None
        job.run.set_status(status, message=message, finished=time.time(), **fields)
        if not job.events or job.events[-1]["kind"] != "done":
            job.events.append({"kind": "done", "status": status, "message": message, "time": time.time()})
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception as e:  # publishing must not take the worker down
                job.events.append({"kind": "error", "message": f"After the run: {e}", "time": time.time()})
        job.finished.set()
