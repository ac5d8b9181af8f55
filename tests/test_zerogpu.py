"""The studio on an emulated ZeroGPU Space (tests/zerogpu_emulation.py: the real `spaces` package, with only
its scheduler client and CUDA packing replaced): training runs in slices, each one GPU call in a forked
worker, leased inside a request of the run's own visitor; classify runs inside a lease too.

With a CUDA build of torch (`make check-cuda-build`), `spaces`' own patches run in the studio's main
process, and a fake CUDA driver shows that the main process never starts CUDA (fake_cuda_driver.py).

A studio per module, in a process of its own (the emulation must come before torch), driven through
`gradio_client` as a visitor's code would drive a Space.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import fake_cuda_driver
import pytest
import requests
from helpers import ROOT, free_port, wait_for
from safetensors.torch import load_file
from studio_fixtures import publish_random
from zerogpu_emulation import ip_token, leases, read_ledger

pytestmark = pytest.mark.slow  # real training in forked workers
SAMPLE = "Support routing (classification, 480 rows)"
AWAY = 15  # seconds without a request of the visitor before their run pauses (30 on a Space)
CUDA_BUILD = fake_cuda_driver.cuda_build()  # of torch: then the main process runs under `spaces`' own patches
RUN = dict(base_model="minilm", bottleneck=16, auto=False, epochs=1, batch_size=16, max_length=32, seed=5)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    home = tmp_path_factory.mktemp("zerogpu")
    ledger, quotas, port = home / "leases.jsonl", home / "quotas.json", free_port()
    quotas.write_text(json.dumps({"bob": {"leases": 1}, "erin": {"leases": 0}}))  # bob's covers one GPU call
    args = [sys.executable, "tests/zerogpu_studio.py", str(home / "studio"), str(port), str(ledger), str(quotas)]
    env = fake_cuda_driver.environment(home / "driver", home / "driver.log") if CUDA_BUILD else None
    with open(home / "studio.log", "w") as log:
        # A session of its own: the teardown ends the studio and its forked GPU workers together.
        proc = subprocess.Popen(
            [*args, str(AWAY)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}/"

        def up():
            try:
                return requests.get(url, timeout=2).ok
            except requests.RequestException:
                return proc.poll() is not None and pytest.fail((home / "studio.log").read_text()[-3000:])

        wait_for(up, timeout=240, every=0.5, what="the emulated ZeroGPU studio")
        assert fake_cuda_driver.starts(home / "driver.log", proc.pid) == [], "its start reached the CUDA driver"
        yield types.SimpleNamespace(url=url, ledger=ledger, home=home, pid=proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


@pytest.fixture(autouse=True)
def the_main_process_never_starts_cuda(space):
    """With a CUDA build of torch (fake_cuda_driver), each test ends with the Space's main process never
    having started the CUDA driver; its forked workers may. A CPU build has no driver to start: there the
    emulation raises at a backward pass or optimizer step in the main process instead."""
    before = len(fake_cuda_driver.starts(space.home / "driver.log", space.pid))
    yield
    assert fake_cuda_driver.starts(space.home / "driver.log", space.pid)[before:] == []


def client(url: str, visitor: str):
    from gradio_client import Client

    return Client(url, headers={"X-IP-Token": ip_token(visitor)}, verbose=False)


def start(studio, name: str, **settings) -> str:
    """Load the routing sample and start run `name` with RUN's settings (and `settings`); its id."""
    studio.predict(SAMPLE, "minilm", 64, api_name="/use_sample")
    return studio.predict(name=name, **{**RUN, **settings}, api_name="/start_training")[0]


def follow(studio, run_id: str, timeout: float = 600) -> str:
    """Poll /training_status as the README's example does (each poll is the visitor's request) until the run ends."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = studio.predict(run_id, api_name="/training_status")
        if any(word in status for word in (": completed", ": stopped", ": failed")):
            return status
        time.sleep(0.5)
    raise AssertionError(f"the run did not end: {status}")


def test_a_run_trains_in_leased_slices_and_classify_takes_a_lease(space):
    url, ledger = space.url, space.ledger
    studio = client(url, "alice")
    run_id = start(studio, "zg")
    status = follow(studio, run_id)
    assert ": completed" in status, status
    slices = [lease for lease in leases(ledger) if lease["visitor"] == "alice"]
    assert len(slices) >= 2, slices  # several slices, each its own GPU call
    assert all(lease["thread"] for lease in slices), "every lease is taken inside a visitor's request"
    assert not any(lease["aborted"] for lease in slices)
    assert all(lease["seconds"] <= lease["requested"] for lease in slices)
    workers = {e["worker"] for e in read_ledger(ledger) if e["event"] == "allow"}
    assert workers and not workers & {lease["pid"] for lease in slices}, "slices run in forked workers"
    if CUDA_BUILD:  # the driver check sees the workers, so its silence about the main process means something
        assert workers <= fake_cuda_driver.processes(space.home / "driver.log")
    wall = slices[-1]["end"] - slices[0]["time"]
    inside = sum(lease["seconds"] for lease in slices)
    print(f"{len(slices)} slices, {inside:.1f} s of {wall:.1f} s inside GPU leases ({inside / wall:.0%})")
    assert inside / wall >= 0.8

    before = len(leases(ledger))
    answer = studio.predict("zg", "I was charged twice for one order", api_name="/classify")
    assert answer["label"] in ("billing", "orders", "tech")
    assert len(leases(ledger)) == before + 1, "classify ran inside a GPU lease"


def adapter_weights(home, run_id: str) -> dict:
    (path,) = (home / "studio").glob(f"**/{run_id}/adapter/adapter_model.safetensors")
    return load_file(path)


def test_an_adapter_added_after_the_worker_started_classifies_through_that_worker(space):
    """The worker forked for the first classify never sees the parent's memory again: it must take a later
    adapter from the library on disk (here one written by another process, as an upload would be)."""
    from adapter_core import classify, load_adapter, load_base
    from studio.library import Library

    url, ledger, home = space.url, space.ledger, space.home
    studio = client(url, "alice")
    studio.predict("zg", "warm the classify worker up", api_name="/classify")
    workers = [e for e in read_ledger(ledger) if e["event"] == "allow"]
    shelf = types.SimpleNamespace(home=home / "studio", library=Library(home / "studio"))
    labels = ["billing", "orders", "tech"]
    entry = publish_random(shelf, "minilm", "late", "classification", labels, seed=9, scale=0.5)
    text = "My invoice shows a fee I do not recognise"
    answer = studio.predict("late", text, api_name="/classify")
    assert [e for e in read_ledger(ledger) if e["event"] == "allow"] == workers, "the same worker answered"
    base = load_base("minilm")
    load_adapter(base.model, entry.path, name="late")
    (expected,) = classify(base.model, base.tokenizer, [text], "late")
    assert answer["label"] == expected.label
    shown = {c["label"]: c["confidence"] for c in answer["confidences"]}
    assert shown == pytest.approx(expected.probabilities, abs=1e-4)


def test_a_refused_lease_pauses_the_run_and_resume_ends_it_as_if_never_paused(space):
    url, ledger, home = space.url, space.ledger, space.home
    bob = client(url, "bob")
    run_id = start(bob, "zgq")
    status = follow(bob, run_id)
    assert ": stopped" in status and re.search(r"Paused at step [1-9]\d* of 27", status), status
    assert "You have exceeded your ZeroGPU runs limit" in status and "sign in with Hugging Face" in status
    assert any(e["event"] == "refused" and e["visitor"] == "bob" for e in read_ledger(ledger))

    alice = client(url, "alice")  # local mode: one user; the quota is the requester's
    alice.predict(run_id, api_name="/resume_run")
    assert ": completed" in follow(alice, run_id)
    ours, uninterrupted = adapter_weights(home, run_id), adapter_weights(home, first_run(home))
    assert max(float((ours[k] - uninterrupted[k]).abs().max()) for k in ours) == 0.0


def first_run(home) -> str:
    """The run of the first test (adapter zg): the same data, settings and seed, never paused."""
    from adapter_core.engine import RunStore

    return next(r.id for r in RunStore(home / "studio").list() if r.config().get("name") == "zg")


def test_a_closed_page_pauses_the_run_at_its_checkpoint(space):
    from adapter_core.engine import RunStore

    url, home = space.url, space.home
    carol = client(url, "carol")
    # Long enough that the one status call below (which runs slices for up to 10 s) cannot finish it.
    run_id = start(carol, "zgc", epochs=8)
    trained = lambda: re.search(r"step [1-9]\d*/", carol.predict(run_id, api_name="/training_status"))  # noqa: E731
    wait_for(trained, timeout=120, what="a slice")
    run = RunStore(home / "studio").get(run_id)  # read from disk: a status call would drive the run again
    # The engine's end records "stopped" first and the job manager then adds why: wait for the final state.
    paused = lambda: (status := run.status())["status"] == "stopped" and status.get("message")  # noqa: E731
    wait_for(paused, timeout=300, what="the pause")  # then its end phase
    assert "no page or API client of yours asked for its progress" in run.status()["message"]
    assert run.resumable and run.checkpoint_step > 0


def test_cancelling_a_streaming_chat_stops_its_gpu_call(space):
    """Stop (here: the client cancels, which closes the handler's generator) must reach the forked worker,
    which never sees the parent's stop flag: the lease ends at once instead of after the whole answer."""
    url, ledger = space.url, space.ledger
    dave = client(url, "dave")
    job = dave.submit("(none)", "smollm2-135m-instruct", "Write a long story about a lighthouse.", [], api_name="/chat")
    wait_for(lambda: job.status().code.name in ("PROCESSING", "ITERATING") and len(job.outputs()) >= 2, timeout=300,
             what="the first pieces of the answer")  # fmt: skip
    job.cancel()
    cancelled = time.time()
    lease = wait_for(
        lambda: next((x for x in leases(ledger) if x["visitor"] == "dave"), None), timeout=30, what="release"
    )
    assert lease["end"] - cancelled < 5, "the worker stopped generating soon after the cancel"
    assert not lease["aborted"]


def test_the_openai_compatible_api_serves_on_the_cpu_without_a_lease(space):
    """`/v1` callers carry no visitor token, so their requests would be charged to the Space as a whole: on
    ZeroGPU the API serves from the parent process, on the CPU, and takes no lease."""
    url, ledger = space.url, space.ledger
    before = len(read_ledger(ledger))
    r = requests.post(url + "v1/classify", json={"model": "zg", "input": ["I was charged twice"]}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["label"] in ("billing", "orders", "tech")
    assert len(read_ledger(ledger)) == before


def test_out_of_quota_with_the_cpu_chosen_the_run_goes_on_on_the_cpu(space):
    url, ledger = space.url, space.ledger
    erin = client(url, "erin")  # her quota allows no lease at all
    run_id = start(erin, "zge", cpu_when_away=True)
    assert ": completed" in follow(erin, run_id)
    events = [e for e in read_ledger(ledger) if e.get("visitor") == "erin"]
    assert events and all(e["event"] == "refused" for e in events)  # every slice asked, none was lent


@pytest.mark.skipif(not CUDA_BUILD, reason="a CPU build of torch has no CUDA driver to start")
def test_the_driver_check_sees_one_backward_pass_in_a_main_process(tmp_path):
    """The check above is not blind: under `spaces`' patches, a single backward pass on the CPU starts the
    driver (the autograd engine counts the devices of each device type), as it did on the H200."""
    code = (
        "import os; os.environ.update(SPACES_ZERO_GPU='true', SPACES_ZERO_DEVICE_API_URL='http://x');"
        "import spaces, torch; torch.nn.Linear(4, 2)(torch.ones(1, 4)).sum().backward(); print(os.getpid())"
    )
    env = fake_cuda_driver.environment(tmp_path, tmp_path / "driver.log")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "cuInit" in fake_cuda_driver.starts(tmp_path / "driver.log", int(out.stdout.split()[-1]))
