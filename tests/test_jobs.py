"""The job manager and run store on a shared, public studio: owners, a worker that never dies, messages
that keep server details to the server, damaged run folders, and restart detection by boot id."""

import errno
import json
import logging
import math
import os
import threading
import time
from pathlib import Path

import pytest
from helpers import quick, wait_for

from adapter_core import AdapterError
from adapter_core.engine import jobs as jobs_module
from adapter_core.engine import runs as runs_module
from adapter_core.engine.jobs import UNEXPECTED, JobManager
from adapter_core.engine.runs import BOOT_ID, Run, RunStore
from adapter_core.engine.train import Event, TrainResult


class FakeTrainer:
    """Stands in for `train`: reports `training`, then waits until released (or stopped)."""

    def __init__(self):
        self.release = threading.Event()
        self.started: list[str] = []

    def __call__(self, config, out_dir, on_event, should_stop, base=None, resume=False, lease=None):
        self.started.append(config.name)
        on_event(Event("status", status="training", message="fake"))
        while not self.release.is_set() and not should_stop():
            time.sleep(0.01)
        return TrainResult("stopped" if should_stop() else "completed", Path(out_dir) / "adapter", {}, 1, 0.1, 10.0)


@pytest.fixture
def fake(monkeypatch):
    trainer = FakeTrainer()
    monkeypatch.setattr(jobs_module, "train", trainer)
    monkeypatch.setattr(jobs_module, "load_base", lambda name: None)  # no base to share with a fake
    yield trainer
    trainer.release.set()


# Owners ----------------------------------------------------------------------------------------------
def test_each_owner_sees_only_their_own_jobs_and_runs(tmp_path, fake):
    manager = JobManager(RunStore(tmp_path))
    alice = manager.submit(quick(name="a1"), owner="alice")
    bob = manager.submit(quick(name="b1"), owner="bob")
    alice2 = manager.submit(quick(name="a2"), owner="alice")
    wait_for(lambda: alice.status == "training")
    assert (alice.owner, bob.owner) == ("alice", "bob")
    assert manager.jobs("alice") == [alice, alice2] and manager.jobs("bob") == [bob]
    assert manager.jobs() == [alice, bob, alice2]  # local mode sees everything
    assert manager.running("alice") is alice and manager.running("bob") is None and manager.running() is alice
    assert manager.queued("alice") == [alice2] and manager.queued("bob") == [bob]
    assert manager.active_count("alice") == 2 and manager.active_count("bob") == 1 and manager.active_count() == 3
    assert manager.active_count("carol") == 0 and manager.jobs("carol") == []
    assert manager.get(bob.id, "bob") is bob and manager.get(bob.id) is bob

    # Someone else's job is indistinguishable from one that does not exist.
    with pytest.raises(AdapterError) as other:
        manager.get(bob.id, "alice")
    with pytest.raises(AdapterError) as unknown:
        manager.get("no-such-job", "alice")
    assert str(other.value) == f"No job {bob.id!r} for you."
    assert str(unknown.value) == "No job 'no-such-job' for you."
    with pytest.raises(AdapterError, match="for you"):
        manager.stop(bob.id, "alice")
    with pytest.raises(AdapterError, match="for you"):
        manager.wait(bob.id, 1, owner="alice")
    assert bob.status == "queued"

    manager.stop(bob.id, "bob")  # cancels the queued job
    assert bob.status == "cancelled" and manager.active_count("bob") == 0
    fake.release.set()
    manager.wait(alice2.id, 30)
    assert alice.status == alice2.status == "completed" and manager.active_count() == 0

    # The owner is in status.json, so a new process (a new store) still knows whose run is whose.
    store = RunStore(tmp_path)
    assert json.loads((alice.run.dir / "status.json").read_text())["owner"] == "alice"
    assert {r.id for r in store.list("alice")} == {alice.id, alice2.id}
    assert [r.id for r in store.list("bob")] == [bob.id]
    assert len(store.list()) == 3 and store.list("carol") == []
    assert store.get(alice.id, "alice").owner == "alice"
    with pytest.raises(AdapterError) as hidden:
        store.get(alice.id, "bob")
    assert str(hidden.value) == f"No run {alice.id!r} for you."
    with pytest.raises(AdapterError, match="for you"):
        store.delete(alice.id, "bob")
    assert store.get(alice.id).id == alice.id
    manager.close()


def test_local_runs_without_an_owner_are_not_shown_to_visitors(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("mine", quick().to_dict())
    assert run.owner is None and store.list() == [run] and store.list("visitor") == []
    with pytest.raises(AdapterError):
        store.get(run.id, "visitor")


def test_run_store_errors_name_no_server_path(tmp_path):
    store = RunStore(tmp_path)
    for run_id in ("nope", "../runs", ".hidden", "a/b", "", None, 5):
        with pytest.raises(AdapterError) as err:
            store.get(run_id)
        assert str(tmp_path) not in str(err.value) and "for you" in str(err.value)


# A worker that never dies ---------------------------------------------------------------------------
def test_worker_survives_a_failing_status_write_and_runs_the_next_job(tmp_path, monkeypatch, caplog):
    real = Run.set_status
    calls: dict[str, int] = {}

    def flaky(self, status, **fields):
        calls[self.id] = calls.get(self.id, 0) + 1
        if "doomed" in self.id and calls[self.id] == 2:  # call 1 is `queued` at submit; 2 is the worker's first
            raise OSError(errno.ENOSPC, "No space left on device", str(self.dir / "status.json"))
        return real(self, status, **fields)

    monkeypatch.setattr(Run, "set_status", flaky)
    manager = JobManager(RunStore(tmp_path))
    with caplog.at_level(logging.ERROR, logger="adapter_studio"):
        doomed = manager.submit(quick(name="doomed"))
        good = manager.submit(quick(name="good"))
        manager.wait(doomed.id, 300)
        manager.wait(good.id, 300)
    assert doomed.finished.is_set() and doomed.status == "failed"
    assert doomed.error == UNEXPECTED
    assert "OSError" not in doomed.error and str(tmp_path) not in doomed.error
    assert json.loads((doomed.run.dir / "status.json").read_text())["status"] == "failed"
    assert "No space left on device" in (doomed.run.dir / "error.log").read_text()
    assert any("doomed" in r.getMessage() for r in caplog.records)
    assert good.status == "completed" and good.run.has_adapter
    assert manager._worker.is_alive()
    manager.close()


def test_worker_survives_when_all_bookkeeping_fails(tmp_path, monkeypatch, fake):
    """Every status write, event write and error.log write fail for one job, and the on_finish hook raises:
    the job still ends, failed, and the next job runs."""
    real_status, real_event = Run.set_status, Run.append_event

    def broken_status(self, status, **fields):
        if "doomed" in self.id and status != "queued":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_status(self, status, **fields)

    def broken_event(self, event):
        if "doomed" in self.id:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_event(self, event)

    def on_finish(job):
        raise RuntimeError(f"publishing broke in {tmp_path}")

    monkeypatch.setattr(Run, "set_status", broken_status)
    monkeypatch.setattr(Run, "append_event", broken_event)
    manager = JobManager(RunStore(tmp_path), on_finish=on_finish)
    blocker = manager.submit(quick(name="blocker"))  # holds the worker while the stage is set
    doomed = manager.submit(quick(name="doomed"))
    (doomed.run.dir / "error.log").mkdir()  # so even the traceback cannot be written
    second = manager.submit(quick(name="second"))
    fake.release.set()
    for job in (blocker, doomed, second):
        manager.wait(job.id, 30)
    assert doomed.finished.is_set() and doomed.status == "failed"
    assert doomed.error == "The run failed on the server; details are in the server's log."
    assert blocker.status == second.status == "completed"
    after = second.latest("error")
    assert after and str(tmp_path) not in after["message"] and "RuntimeError" not in after["message"]
    assert manager._worker.is_alive()
    manager.close()


def test_worker_survives_its_own_finish_step_failing(tmp_path, monkeypatch, fake):
    real = JobManager._finish

    def finish(self, job, status, message, **fields):
        if job.config.name == "doomed":
            raise RuntimeError("bookkeeping bug")
        return real(self, job, status, message, **fields)

    monkeypatch.setattr(JobManager, "_finish", finish)
    manager = JobManager(RunStore(tmp_path))
    doomed = manager.submit(quick(name="doomed"))
    second = manager.submit(quick(name="second"))
    fake.release.set()
    manager.wait(doomed.id, 30)
    manager.wait(second.id, 30)
    assert doomed.status == "failed" and doomed.latest("done")["status"] == "failed"
    assert "RuntimeError" not in doomed.error and "bookkeeping" not in doomed.error
    assert second.status == "completed" and manager.active_count() == 0
    manager.close()


def test_unexpected_failures_keep_class_names_and_paths_out_of_the_message(tmp_path, monkeypatch):
    def explode(config, out_dir, on_event, should_stop, base=None, resume=False, lease=None):
        if config.name == "user-error":
            raise AdapterError("routing.csv has no label column.")
        raise KeyError(f"{tmp_path}/secret/thing")

    monkeypatch.setattr(jobs_module, "train", explode)
    manager = JobManager(RunStore(tmp_path))
    crash = manager.submit(quick(name="crash"))
    user = manager.submit(quick(name="user-error"))
    manager.wait(crash.id, 30)
    manager.wait(user.id, 30)
    assert crash.error == "The run failed on the server; details are in the run's error.log."
    saved = json.loads((crash.run.dir / "status.json").read_text())
    assert saved["status"] == "failed" and saved["message"] == crash.error
    for text in (crash.error, json.dumps(crash.events)):
        assert "KeyError" not in text and str(tmp_path) not in text
    log = (crash.run.dir / "error.log").read_text()
    assert "Traceback" in log and "KeyError" in log and "secret" in log
    assert user.error == "routing.csv has no label column."  # the user's own mistake, word for word
    manager.close()


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=math.inf),
        dict(epochs=1e309),
        dict(lr=math.nan),
        dict(seed=-1),
        dict(seed=2**32),
        dict(batch_size=8.5),
        dict(batch_size=16.0),
        dict(max_length=True),
        dict(grad_accum=0),
        dict(max_steps=-1),
        dict(max_seconds=-5.0),
        dict(max_seconds=math.inf),
        dict(eval_every=-1),
        dict(warmup_ratio=1.0),
        dict(warmup_ratio=-0.1),
        dict(weight_decay=-0.01),
        dict(dropout=1.0),
        dict(dropout=math.nan),
        dict(val_fraction="0.1"),
        dict(max_grad_norm=0),
        dict(precision="fp8"),
        dict(task="regression"),
    ],
)
def test_submit_refuses_settings_that_cannot_train(tmp_path, bad):
    manager = JobManager(RunStore(tmp_path))
    with pytest.raises(AdapterError) as err:
        manager.submit(quick(**bad))
    key = next(iter(bad))
    assert key in str(err.value) and "\n" not in str(err.value)
    assert RunStore(tmp_path).list() == [] and manager.jobs() == []
    manager.close()


def test_check_accepts_the_edges():
    quick(seed=0).check()
    quick(seed=2**32 - 1, warmup_ratio=0, weight_decay=0, dropout=0.5, max_steps=0, max_seconds=0, eval_every=0).check()


def test_submit_reports_a_full_disk_in_words(tmp_path, monkeypatch):
    def full(self, name, config, owner=None, group=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x"))

    monkeypatch.setattr(RunStore, "create", full)
    manager = JobManager(RunStore(tmp_path))
    with pytest.raises(AdapterError) as err:
        manager.submit(quick())
    assert "disk" in str(err.value) and str(tmp_path) not in str(err.value)
    manager.close()


# The run store ---------------------------------------------------------------------------------------
def test_damaged_run_folders_are_skipped_and_logged(tmp_path, caplog):
    store = RunStore(tmp_path)
    good = store.create("good", quick().to_dict())
    damaged = {
        "bad-config": ("config.json", "{not json"),
        "list-config": ("config.json", "[1, 2]"),
        "cut-status": ("status.json", '{"status": "traini'),
        "binary-status": ("status.json", b"\xff\xfe\x00garbage"),
        "no-status-field": ("status.json", '{"owner": null}'),
        "deep-status": ("status.json", "[" * 100_000 + "]" * 100_000),
    }
    for name, (file, content) in damaged.items():
        run = store.create(name, quick().to_dict())
        path = run.dir / file
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    (store.root / "not-a-run").mkdir()  # no config.json: not a run at all
    with caplog.at_level(logging.WARNING, logger="adapter_studio"):
        assert store.list() == [good]
    assert len(store.unreadable()) == len(damaged)
    assert sum("Skipping run folder" in r.getMessage() for r in caplog.records) == len(damaged)
    for run_id in store.unreadable():
        Run(store.root / run_id).status()  # reading one directly never raises either
        Run(store.root / run_id).config()


def test_events_skip_truncated_and_foreign_lines(tmp_path):
    run = RunStore(tmp_path).create("r", quick().to_dict())
    run.append_event({"kind": "step", "step": 1})
    with open(run.dir / "metrics.jsonl", "a") as f:
        f.write('5\n"text"\n{"no_kind": 1}\n{"kind": "step", "st')
    assert run.events() == [{"kind": "step", "step": 1}]


def test_restart_is_detected_by_boot_id_not_by_pid(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("r", quick().to_dict(), owner="alice")
    run.set_status("training")
    saved = json.loads((run.dir / "status.json").read_text())
    assert saved["boot"] == BOOT_ID and saved["owner"] == "alice"
    assert run.status()["status"] == "training"  # this process wrote it: still running

    # Another boot that happened to get this very pid (containers reuse pids): still interrupted.
    (run.dir / "status.json").write_text(json.dumps({**saved, "boot": "an-earlier-boot", "pid": os.getpid()}))
    status = run.status()
    assert status["status"] == "interrupted" and status["owner"] == "alice"
    assert status["message"] == "The app restarted during this run, before it saved a checkpoint."
    assert store.list("alice")[0].status()["status"] == "interrupted"

    # A status.json from before boot ids existed, left active: interrupted too.
    (run.dir / "status.json").write_text(json.dumps({"status": "loading", "pid": os.getpid()}))
    assert run.status()["status"] == "interrupted"

    # A finished run stays finished, whoever wrote it.
    (run.dir / "status.json").write_text(json.dumps({**saved, "status": "completed", "boot": "an-earlier-boot"}))
    assert run.status()["status"] == "completed"


def test_boot_id_is_per_process():
    assert isinstance(runs_module.BOOT_ID, str) and len(runs_module.BOOT_ID) == 32


def test_finished_jobs_beyond_the_keep_limit_leave_memory_but_not_the_disk(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(jobs_module, "KEEP_FINISHED", 2)
    fake.release.set()
    manager = JobManager(RunStore(tmp_path))
    ids = []
    for i in range(5):
        ids.append(manager.submit(quick(name=f"r{i}"), owner="anon:a").id)
        manager.wait(ids[-1], 30)
    manager.submit(quick(name="last"), owner="anon:a")
    kept = [j.id for j in manager.jobs()]
    assert ids[:3] == [i for i in ids if i not in kept] and len(kept) == 3  # two finished and the new one
    assert {r.id for r in manager.store.list(owner="anon:a")} >= set(ids)  # every run is still a past run
    manager.close(timeout=10)
