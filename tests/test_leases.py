"""The slice broker: a run's slices run in its owner's requests, never in the trainer's thread; a run whose
owner stops asking pauses (or goes on on the CPU, if they chose so); a refused lease pauses it."""

import threading
import types

import pytest

from adapter_core.engine import leases
from adapter_core.engine.leases import SliceBroker
from adapter_core.engine.sliced_loop import Paused


def spec(tmp_path=None):
    return types.SimpleNamespace(stop_file=str(tmp_path / "STOP") if tmp_path else None, weights={}, optimizer={},
                                 scheduler={}, rng=None)  # fmt: skip


def in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:
            out["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def until_stop_file(stop: threading.Event, folder):
    """A slice that asks its run to stop, then takes steps until its stop file appears (or 5 s pass)."""

    def running(s):
        stop.set()
        for _ in range(100):
            if (folder / "STOP").exists():
                return "stopped by the file"
            threading.Event().wait(0.05)
        return "never stopped"

    return running


def test_a_slice_runs_in_a_request_of_its_owner_only():
    broker, ran_in = SliceBroker(away_seconds=5), []
    thread, out = in_thread(lambda: broker.lease("alice", spec(), lambda: False))
    run = lambda s: ran_in.append(threading.current_thread().name) or "result"  # noqa: E731
    assert broker.drive("bob", run, 0.3) == 0  # another visitor's request takes nothing
    assert broker.drive("alice", run, 0.3) == 1
    thread.join(5)
    assert out["value"] == "result" and ran_in == [threading.current_thread().name]


def test_no_request_for_a_while_pauses_or_goes_on_on_the_cpu(monkeypatch):
    broker = SliceBroker(away_seconds=0.3)
    with pytest.raises(Paused, match="no page or API client of yours asked for its progress"):
        broker.lease("alice", spec(), lambda: False)
    monkeypatch.setattr(leases, "run_on_cpu", lambda s: "on the cpu")
    assert broker.lease("alice", spec(), lambda: False, cpu_when_away=True) == "on the cpu"


def test_a_refused_lease_pauses_unless_the_cpu_was_chosen(monkeypatch):
    broker = SliceBroker(away_seconds=5)
    monkeypatch.setattr(leases, "run_on_cpu", lambda s: "on the cpu")

    def refuse(s):
        raise Paused("ZeroGPU refused more GPU time")

    for cpu, expected in ((False, Paused), (True, "on the cpu")):
        thread, out = in_thread(lambda: broker.lease("alice", spec(), lambda: False, cpu_when_away=cpu))  # noqa: B023
        broker.drive("alice", refuse, 1.0)
        thread.join(5)
        assert isinstance(out.get("error"), Paused) if expected is Paused else out["value"] == expected


def test_a_failed_worker_pauses_the_run_in_words_and_its_error_goes_only_to_the_log(caplog):
    broker = SliceBroker(away_seconds=5)

    def fail(s):
        raise FileNotFoundError("[Errno 2] No such file or directory: '/data/.adapter_studio/models/minilm'")

    thread, out = in_thread(lambda: broker.lease("alice", spec(), lambda: False))
    with caplog.at_level("WARNING", logger="adapter_studio"):
        broker.drive("alice", fail, 1.0)
    thread.join(5)
    said = str(out["error"])
    assert isinstance(out["error"], Paused) and said == leases.FAILED and "/data" not in said
    assert "/data/.adapter_studio" in caplog.text  # the operator still sees what went wrong


def test_stop_withdraws_a_waiting_slice_and_reaches_a_running_one_through_its_file(tmp_path):
    broker, stop = SliceBroker(away_seconds=5), threading.Event()
    stop.set()
    assert broker.lease("alice", spec(), stop.is_set).stopped  # withdrawn: no step taken
    stop.clear()
    s = spec(tmp_path)
    thread, out = in_thread(lambda: broker.lease("alice", s, stop.is_set))

    broker.drive("alice", until_stop_file(stop, tmp_path), 5)
    thread.join(5)
    assert out["value"] == "stopped by the file"


def test_stop_reaches_a_slice_running_on_the_cpu_through_its_file(tmp_path, monkeypatch):
    broker, stop = SliceBroker(away_seconds=0.2), threading.Event()
    monkeypatch.setattr(leases, "run_on_cpu", until_stop_file(stop, tmp_path))
    assert broker.lease("alice", spec(tmp_path), stop.is_set, cpu_when_away=True) == "stopped by the file"
