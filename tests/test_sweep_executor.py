"""The one sweep executor (engine, on the JobManager) with a stand-in trainer: a grid queued as one group,
the best chosen by the validation metric and published exactly once, its record kept beside the runs, a
restart in the middle that still finishes the sweep once, stop, and a failed run."""

import json
import threading
import time
from pathlib import Path

import pytest
from helpers import quick, wait_for

from adapter_core import AdapterError
from adapter_core.engine import jobs as jobs_module
from adapter_core.engine import runs as runs_module
from adapter_core.engine.jobs import JobManager
from adapter_core.engine.runs import Run, RunStore
from adapter_core.engine.sweep import sweep_configs
from adapter_core.engine.train import Event, TrainResult


class FakeTrainer:
    """Stands in for `train`: a run scores the accuracy that `scores` gives its bottleneck, saves a stand-in
    adapter and ends. A run named in `hold` waits until released or stopped; one named in `fail` fails."""

    def __init__(self, scores: dict[int, float]):
        self.scores = scores
        self.hold: set[str] = set()
        self.fail: set[str] = set()
        self.release = threading.Event()
        self.started: list[str] = []

    def __call__(self, config, out_dir, on_event, should_stop, base=None, resume=False, lease=None):
        self.started.append(config.name)
        on_event(Event("status", status="training", message="fake"))
        if config.name in self.fail:
            raise AdapterError(f"{config.name}: the data file has one class only.")
        while config.name in self.hold and not self.release.is_set() and not should_stop():
            time.sleep(0.01)
        status = "stopped" if should_stop() else "completed"
        adapter = Path(out_dir) / "adapter"
        adapter.mkdir(parents=True, exist_ok=True)
        (adapter / "adapter_config.json").write_text("{}")
        accuracy = self.scores[config.adapter.bottleneck]
        metrics = {"accuracy": accuracy, "val_loss": 1 - accuracy}
        info = {"trainable": 100 * config.adapter.bottleneck, "stopped_early": False}
        on_event(Event("done", status=status, step=3, metrics=metrics, elapsed_s=0.5, info=info))
        return TrainResult(status, adapter, metrics, 3, 0.5, 10.0)


class Publisher:
    """A publish step that records each call."""

    def __init__(self, fails: Exception | None = None):
        self.calls: list[tuple[str, str]] = []
        self.fails = fails

    def __call__(self, sweep, best: Run) -> str:
        self.calls.append((sweep.id, best.id))
        if self.fails:
            raise self.fails
        return f"{sweep.name}-best"


@pytest.fixture
def fake(monkeypatch):
    trainer = FakeTrainer({8: 0.7, 16: 0.9, 32: 0.8})
    monkeypatch.setattr(jobs_module, "train", trainer)
    monkeypatch.setattr(jobs_module, "load_base", lambda name: None)
    yield trainer
    trainer.release.set()


def grid() -> list:
    return sweep_configs(quick(name="route"), [8, 16, 32], [1e-3])


def statuses(manager: JobManager, sweep) -> list[str]:
    return [m["status"] for m in manager.sweeps.members(sweep)]


def test_a_grid_is_one_group_ranked_by_the_metric_and_its_best_published_once(tmp_path, fake):
    publish = Publisher()
    manager = JobManager(RunStore(tmp_path), publish_best=publish)
    configs = grid()
    sweep = manager.sweeps.submit(configs, "route", owner="alice")
    assert manager.sweeps.wait(sweep.id, 30)
    jobs = [manager.get(i) for i in sweep.run_ids]
    assert [j.config.name for j in jobs] == [c.name for c in configs] == fake.started  # grid order, one by one
    assert {j.group for j in jobs} == {sweep.id} and {j.owner for j in jobs} == {"alice"}
    assert publish.calls == [(sweep.id, jobs[1].id)]  # bottleneck 16 scored best
    assert (sweep.best, sweep.best_name, sweep.published) == (jobs[1].id, "route-r16-lr1e-3", "route-best")
    assert sweep.ended and not sweep.stopped and sweep.error is None

    # The record, in the run store, says all of it.
    saved = json.loads((tmp_path / "runs" / "sweeps" / f"{sweep.id}.json").read_text())
    assert {k: saved[k] for k in ("id", "name", "owner", "task", "metric", "run_ids", "expected", "state")} == {
        "id": sweep.id,
        "name": "route",
        "owner": "alice",
        "task": "classification",
        "metric": "accuracy",
        "run_ids": [j.id for j in jobs],
        "expected": 3,
        "state": "ended",
    }
    assert saved["best"] == jobs[1].id and saved["published"] == "route-best"
    members = manager.sweeps.members(sweep)
    assert [(m["name"], m["bottleneck"], m["status"]) for m in members] == [
        (c.name, c.adapter.bottleneck, "completed") for c in configs
    ]
    assert [m["metrics"]["accuracy"] for m in members] == [0.7, 0.9, 0.8] and members[0]["trainable"] == 800

    # Exactly once: a member's end seen again, and a new manager over the folder, publish nothing more.
    manager.sweeps.member_ended(jobs[0])
    JobManager(RunStore(tmp_path), publish_best=publish).close()
    assert len(publish.calls) == 1

    # Another owner's sweep is not there for them.
    with pytest.raises(AdapterError) as hidden:
        manager.sweeps.get(sweep.id, "bob")
    assert str(hidden.value) == f"No sweep {sweep.id!r} for you."
    with pytest.raises(AdapterError, match="for you"):
        manager.sweeps.stop(sweep.id, "bob")
    assert manager.sweeps.latest("bob") is None and manager.sweeps.latest("alice") is sweep
    assert manager.sweeps.latest() is sweep  # local mode sees everything
    manager.close()


def test_a_restart_in_the_middle_still_ends_the_sweep_and_publishes_once(tmp_path, fake, monkeypatch):
    configs = grid()
    fake.hold = {configs[1].name}
    before = Publisher()
    manager = JobManager(RunStore(tmp_path), publish_best=before)
    sweep = manager.sweeps.submit(configs, "route")
    wait_for(lambda: manager.get(sweep.run_ids[1]).status == "training")
    assert statuses(manager, sweep) == ["completed", "training", "queued"]

    # The app restarts: a new process (a new boot id) over the same folder. The run that was training and
    # the one still queued read as interrupted, so the sweep has ended: its best so far is published.
    monkeypatch.setattr(runs_module, "BOOT_ID", "a-later-boot")
    after = Publisher()
    restarted = JobManager(RunStore(tmp_path), publish_best=after)
    record = restarted.sweeps.get(sweep.id)
    assert record.ended and after.calls == [(sweep.id, sweep.run_ids[0])]
    assert statuses(restarted, record) == ["completed", "interrupted", "interrupted"]
    assert record.published == "route-best" and restarted.sweeps.latest() is record

    # The earlier manager's runs ending after all (a real restart leaves none) publish nothing more,
    # and neither does a third start.
    manager.close()
    assert manager.sweeps.wait(sweep.id, 30) and sweep.ended and sweep.best == sweep.run_ids[0]
    JobManager(RunStore(tmp_path), publish_best=after).close()
    assert before.calls == [] and len(after.calls) == 1
    restarted.close()


def test_a_sweep_whose_runs_all_ended_before_the_restart_is_published_at_start_up(tmp_path, fake, monkeypatch):
    manager = JobManager(RunStore(tmp_path))  # no publish step here
    sweep = manager.sweeps.submit(grid(), "route")
    assert manager.sweeps.wait(sweep.id, 30)
    manager.close()
    # The process died after its last run ended but before it ranked the sweep.
    path = tmp_path / "runs" / "sweeps" / f"{sweep.id}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "state": "running", "best": None}))
    monkeypatch.setattr(runs_module, "BOOT_ID", "a-later-boot")
    publish = Publisher()
    restarted = JobManager(RunStore(tmp_path), publish_best=publish)
    assert publish.calls == [(sweep.id, sweep.run_ids[1])] and restarted.sweeps.get(sweep.id).ended
    restarted.close()


def test_stop_stops_every_run_of_the_sweep_and_the_best_of_what_ran_is_published(tmp_path, fake):
    configs = grid()
    fake.hold = {configs[0].name}
    publish = Publisher()
    manager = JobManager(RunStore(tmp_path), publish_best=publish)
    sweep = manager.sweeps.submit(configs, "route", owner="alice")
    wait_for(lambda: manager.get(sweep.run_ids[0]).status == "training")
    assert manager.sweeps.stop(sweep.id, "alice") == 3
    assert manager.sweeps.wait(sweep.id, 30)
    assert statuses(manager, sweep) == ["stopped", "cancelled", "cancelled"] and fake.started == [configs[0].name]
    assert sweep.stopped and publish.calls == [(sweep.id, sweep.run_ids[0])]  # a stopped run keeps what it learned
    assert manager.sweeps.stop(sweep.id, "alice") == 0  # it has ended
    manager.close()


def test_runs_queued_as_one_wait_until_all_are_queued(tmp_path, fake):
    """A sweep queues its runs inside `holding`: a run that fails early then always finds the rest queued
    (to be cancelled), never still to be submitted (ci: 'completed' where 'cancelled' was due)."""
    manager = JobManager(RunStore(tmp_path))
    with manager.holding():
        first = manager.submit(grid()[0])
        assert not first.finished.wait(0.5) and first.status == "queued"  # held, though the worker is free
    assert manager.wait(first.id, 30).status == "completed"
    manager.close()


def test_a_failed_run_ends_the_sweep_only_when_asked(tmp_path, fake):
    configs = grid()
    fake.fail = {configs[1].name}
    manager = JobManager(RunStore(tmp_path), publish_best=Publisher())
    strict = manager.sweeps.submit(configs, "strict", stop_on_failure=True)  # the CLI's: the rest is cancelled
    assert manager.sweeps.wait(strict.id, 30)
    assert statuses(manager, strict) == ["completed", "failed", "cancelled"]
    failed = manager.get(strict.run_ids[1])
    assert isinstance(failed.exception, AdapterError) and "one class only" in failed.error
    assert strict.best == strict.run_ids[0] and not strict.stopped
    lenient = manager.sweeps.submit(sweep_configs(quick(name="easy"), [8, 16], [1e-3]), "easy")  # the studio's
    assert manager.sweeps.wait(lenient.id, 30) and statuses(manager, lenient) == ["completed", "completed"]
    manager.close()


@pytest.mark.parametrize(
    "error, said",
    [(AdapterError("Your library is full."), "Your library is full."), (OSError("/srv/x"), "failed on the server")],
)
def test_a_publish_step_that_fails_still_ends_the_sweep_and_says_why(tmp_path, fake, error, said):
    publish = Publisher(fails=error)
    manager = JobManager(RunStore(tmp_path), publish_best=publish)
    sweep = manager.sweeps.submit(grid(), "route")
    assert manager.sweeps.wait(sweep.id, 30)
    assert sweep.ended and sweep.published is None and said in sweep.error and "/srv" not in sweep.error
    assert len(publish.calls) == 1
    manager.close()


def test_damaged_and_foreign_sweep_ids_are_no_sweep(tmp_path, fake):
    folder = tmp_path / "runs" / "sweeps"
    folder.mkdir(parents=True)
    (folder / "cut-short.json").write_text('{"id": "cut-short", "na')
    (folder / "a-list.json").write_text("[1, 2]")
    manager = JobManager(RunStore(tmp_path))
    assert manager.sweeps.latest() is None
    for sweep_id in ("cut-short", "a-list", "../runs", "", None, "no-such-sweep"):
        with pytest.raises(AdapterError, match="No sweep") as err:
            manager.sweeps.get(sweep_id)
        assert str(tmp_path) not in str(err.value)
    with pytest.raises(AdapterError, match="has no runs"):
        manager.sweeps.submit([], "empty")
    manager.close()


def test_a_named_run_store_keeps_runs_by_name_and_a_new_run_replaces_an_old_one(tmp_path):
    store = RunStore(root=tmp_path / "out")  # the CLI's sweep: OUT/<run>
    first = store.create("route-r8", quick().to_dict())
    first.append_event({"kind": "step", "step": 1})
    again = store.create("route-r8", quick().to_dict(), group="g")
    assert first.dir == again.dir == tmp_path / "out" / "route-r8"
    assert again.events() == [] and again.status()["group"] == "g"  # nothing of the earlier run is left
    (tmp_path / "out" / "notes").mkdir()  # a folder that is no run is never removed
    with pytest.raises(AdapterError, match="in the way"):
        store.create("notes", quick().to_dict())
    assert (tmp_path / "out" / "notes").is_dir() and [r.id for r in store.list()] == ["route-r8"]


def test_abort_ends_the_running_run_at_once_and_the_sweep_with_it(tmp_path, fake):
    configs = grid()
    fake.hold = {configs[0].name}
    manager = JobManager(RunStore(tmp_path), publish_best=Publisher())
    sweep = manager.sweeps.submit(configs, "route")
    wait_for(lambda: manager.get(sweep.run_ids[0]).status == "training")
    manager.abort(30)  # the CLI's second Ctrl-C: no stop evaluation, no save
    assert statuses(manager, sweep) == ["failed", "cancelled", "cancelled"] and sweep.ended
    assert manager.get(sweep.run_ids[0]).error == jobs_module.ABORTED and sweep.best is None
