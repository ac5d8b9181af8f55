"""Bounded before work, fair shares and names per owner, at the service (as any caller meets them): a pull
checked against the visitor's room from the Hub's listing, evaluations and data reads within their rows,
zips counted unpacked, the downloads area and the library within their caps, client addresses and the
trainer's turns, the pool of visitors who are not signed in, and one namespace of names per owner.
Each refusal is asserted with what did not happen. The running studio's side is tests/test_fairness.py."""

import json
import os
import random
import threading
import time
import zipfile
from pathlib import Path

import httpx
import huggingface_hub
import pytest
from helpers import held_train, quick, wait_for
from huggingface_hub.file_download import DryRunFileInfo
from share_fixtures import folder_files, tiny_adapter
from studio_fixtures import publish_random

from adapter_core import OWNER_FILE, AdapterError, load_base
from adapter_core.engine import JobManager, RunStore
from studio import data_view as dv
from studio import downloads
from studio import sharing as sh
from studio.callers import Caller, client_address
from studio.library import Library
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio

SAMPLE = str(SAMPLES_DIR / "support_routing.csv")
LABELS = ["billing", "orders", "tech"]
COMMIT = "c0ffee" * 6 + "beef"
MB = 2**20


@pytest.fixture
def fake_trainer(monkeypatch):
    monkeypatch.setattr("adapter_core.engine.jobs.train", held_train)
    monkeypatch.setattr("adapter_core.engine.jobs.load_base", lambda name: None)


@pytest.fixture
def public(tmp_path):
    studio = Studio(tmp_path / "home", Policy(public=True))
    studio.upload_roots = [tmp_path / "uploads"]
    (tmp_path / "uploads").mkdir()
    yield studio
    studio.jobs.close(timeout=30)


def upload(tmp_path, name: str, rows: int) -> Path:
    path = tmp_path / "uploads" / name
    path.write_text("text,label\n" + "".join(f"message {i},{LABELS[i % 3]}\n" for i in range(rows)))
    return path


# Who calls, from where ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "forwarded, trusted, address",
    [
        ("203.0.113.7", True, "203.0.113.7"),  # the proxy wrote it
        ("6.6.6.6, 203.0.113.7", True, "203.0.113.7"),  # a client-sent value before the proxy's hop
        ("203.0.113.7, 10.0.0.3", True, "203.0.113.7"),  # an internal hop after it
        ("10.0.0.3", True, "10.0.0.3"),  # nothing public: the first hop
        ("203.0.113.7", False, "127.0.0.1"),  # no proxy trusted: the socket's peer
        ("", True, "127.0.0.1"),
        # IPv6: one subscriber holds a whole /64, so its addresses are one address here
        ("2001:db8:1:2:aaaa::1", True, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9, fd00::3", True, "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", True, "203.0.113.7"),
    ],
)
def test_the_client_address_is_the_proxys_hop_or_the_peer(forwarded, trusted, address):
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    assert client_address(headers, "127.0.0.1", trusted) == address
    caller = Caller("anon:x", address)
    assert caller == "anon:x" and caller.address == address and json.dumps(caller) == '"anon:x"'


def test_the_trainer_serves_each_share_in_turn(tmp_path, fake_trainer):
    """A share that queued many runs gets one turn, then waits behind those that had none."""
    manager = JobManager(RunStore(tmp_path))
    first = manager.submit(quick(name="a1"), owner="anon:1", share="203.0.113.7")
    wait_for(lambda: first.status == "loading", what="the first run to start")
    flood = [manager.submit(quick(name=f"a{i}"), owner=f"anon:{i}", share="203.0.113.7") for i in (2, 3)]
    honest = manager.submit(quick(name="b1"), owner="hf:honest", share="198.51.100.2")
    assert manager.queued() == [honest, *flood]  # the order they will start in
    started = []
    for job in [first, honest, *flood]:
        wait_for(lambda j=job: j.status == "loading", what=f"{job.config.name} to start")
        started.append(job.config.name)
        manager.stop(job.id)
        manager.wait(job.id, 30)
    assert started == ["a1", "b1", "a2", "a3"]
    manager.close(timeout=30)


# The shared training queue ---------------------------------------------------------------------------------
def test_anonymous_visitors_share_a_small_pool_and_addresses_a_fair_share(public, tmp_path, fake_trainer):
    mine = upload(tmp_path, "mine.csv", 30)
    with pytest.raises(AdapterError, match="Training on your own data needs a Hugging Face sign-in"):
        public.submit(quick(data=str(mine)), Caller("anon:a", "203.0.113.7"))
    assert public.jobs.jobs() == [] and not any((public.home / "runs").iterdir())
    public.submit(quick(data=SAMPLE), Caller("anon:a", "203.0.113.7"))
    pool = "The places for visitors who are not signed in \\(2 runs, shared\\) are taken"
    with pytest.raises(AdapterError, match=pool):  # the same address: its share of the pool is one run
        public.submit(quick(data=SAMPLE), Caller("anon:b", "203.0.113.7"))
    public.submit(quick(data=SAMPLE), Caller("anon:c", "198.51.100.2"))
    with pytest.raises(AdapterError, match=pool):
        public.submit(quick(data=SAMPLE), Caller("anon:d", "192.0.2.9"))
    assert len(public.jobs.jobs()) == 2
    public.submit(quick(data=str(mine)), Caller("hf:e", "192.0.2.9"))  # signed in: the main queue, any file
    held = [public.submit(quick(data=SAMPLE), Caller(f"hf:f{i}", "192.0.2.99"))[0] for i in range(5)]
    with pytest.raises(AdapterError, match=r"Your network already has 5 runs queued or running .* is 5, a fair"):
        public.submit(quick(data=SAMPLE), Caller("hf:f9", "192.0.2.99"))  # a quarter of the 20-run queue
    assert len(public.jobs.jobs()) == 3 + len(held)
    for job in public.jobs.jobs():
        public.jobs.stop(job.id)


def test_the_operator_opens_heavy_work_to_anonymous_visitors(tmp_path, fake_trainer):
    studio = Studio(tmp_path / "home", Policy(public=True, anonymous_heavy=True))
    studio.upload_roots = [tmp_path / "uploads"]
    (tmp_path / "uploads").mkdir()
    job, _ = studio.submit(quick(data=str(upload(tmp_path, "mine.csv", 30))), Caller("anon:a", "203.0.113.7"))
    assert job.owner == "anon:a" and job.share == "203.0.113.7"
    studio.jobs.stop(job.id)
    studio.jobs.close(timeout=30)


def test_studio_wide_caps_on_runs_and_the_library(tmp_path, fake_trainer):
    studio = Studio(tmp_path / "home", Policy(public=True, max_runs_bytes=1))
    (studio.jobs.store.root / "old").mkdir(parents=True)
    (studio.jobs.store.root / "old" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(AdapterError, match="The studio's disk for runs is full"):
        studio.submit(quick(data=SAMPLE), "hf:a")
    assert studio.jobs.jobs() == []
    studio.jobs.close(timeout=10)
    studio = Studio(tmp_path / "home2", Policy(public=True, max_library_adapters=1))
    _, folder = tiny_adapter(tmp_path / "made")
    studio.library.publish(folder, "someone's", owner="hf:b")
    with pytest.raises(AdapterError, match="The studio's library is full for now"):
        studio.submit(quick(data=SAMPLE), "hf:a")
    assert studio.jobs.jobs() == []
    studio.jobs.close(timeout=30)


# Pulls: the Hub's listing against the room, before anything is downloaded -----------------------------------
@pytest.fixture
def listing(monkeypatch):
    """A Hub that only lists: repo -> {path: declared size}. Any real download fails the test."""
    repos, calls, hold = {}, [], {}

    def snapshot_download(repo_id, allow_patterns=None, **kw):
        calls.append((repo_id, kw.get("dry_run", False)))
        if not kw.get("dry_run"):
            raise AssertionError(f"{repo_id} was downloaded")
        if repo_id in hold:
            hold[repo_id].wait(30)
        return [DryRunFileInfo(COMMIT, size, path, "", False, True) for path, size in repos[repo_id].items()]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return repos, calls, hold


def test_an_oversized_pull_is_refused_from_the_listing_before_any_download(public, listing):
    repos, calls, _ = listing
    # Four folders of 60 MB weights: each file is under the 64 MB cap, together over the 200 MB room.
    repos["eve/big"] = {f"a{i}/{name}": size for i in range(4) for name, size in
                        (("adapter_config.json", 900), ("adapter_model.safetensors", 60 * 2**20))}  # fmt: skip
    repos["eve/many"] = {f"a{i}/adapter_config.json": 900 for i in range(30)}
    before = public.library.total_usage()
    with pytest.raises(AdapterError, match=r"eve/big is 240.0 MB; your library has room for 200.0 MB more"):
        sh.pull(public, "eve/big", owner="hf:alice")
    with pytest.raises(AdapterError, match="eve/many holds 30 adapters; your library has room for 20 more"):
        sh.pull(public, "eve/many", owner="hf:alice")
    assert calls == [("eve/big", True), ("eve/many", True)]  # listed, never downloaded
    with pytest.raises(AdapterError, match="Pulling from the Hub needs a Hugging Face sign-in"):
        sh.pull(public, "eve/big", owner="anon:a")
    assert len(calls) == 2 and public.library.total_usage() == before  # the Hub was not even asked


def test_one_pull_per_visitor_and_a_few_for_the_studio(public, listing):
    repos, calls, hold = listing
    repos["eve/slow"] = {"adapter_config.json": 900, "adapter_model.safetensors": 9000}
    hold["eve/slow"] = release = threading.Event()
    errors = []

    def pull(owner):
        try:
            sh.pull(public, "eve/slow", owner=owner)
        except Exception as e:  # the fake Hub refuses the download itself once the listing is let go
            errors.append(str(e))

    threads = [threading.Thread(target=pull, args=(o,)) for o in ("hf:alice", "hf:bob")]
    for t in threads:
        t.start()
    wait_for(lambda: len(public.pulling) == 2 and len(calls) == 2, what="two pulls at the Hub")
    with pytest.raises(AdapterError, match="You already have a pull in progress"):
        sh.pull(public, "eve/slow", owner="hf:alice")
    with pytest.raises(AdapterError, match="The studio is pulling 2 repositories for other visitors"):
        sh.pull(public, "eve/slow", owner="hf:carol")
    assert [c for c in calls if c[1]] == [("eve/slow", True)] * 2  # the refused ones never reached the Hub
    release.set()
    for t in threads:
        t.join(30)
    assert public.pulling == set() and len(errors) == 2


# Evaluations and data files -----------------------------------------------------------------------------------
def test_evaluate_refuses_duplicates_and_files_over_its_rows_before_any_work(public, tmp_path, monkeypatch):
    served = []

    def serve(*args, **kwargs):
        served.append(args)
        raise AssertionError("an adapter was loaded")

    monkeypatch.setattr(public, "served", serve)
    with pytest.raises(AdapterError, match="'mine' is picked more than once; pick each adapter once"):
        public.evaluate(["mine", "other", "mine"], upload(tmp_path, "t.csv", 10), "hf:a")
    with pytest.raises(AdapterError, match="big.csv has 2,001 rows; an evaluation here reads at most 2,000"):
        public.evaluate(["mine"], upload(tmp_path, "big.csv", 2001), "hf:a")
    with pytest.raises(AdapterError, match=r"has 201 rows; an evaluation here reads at most 200 \(2,000 when signed"):
        public.evaluate(["mine"], upload(tmp_path, "small.csv", 201), "anon:a")
    assert served == []  # no adapter was loaded, no row tokenised


def test_a_large_file_is_refused_before_tokenising_and_summarised_from_a_sample(tmp_path, monkeypatch):
    tokenizer = load_base("minilm").tokenizer
    (tmp_path / "uploads").mkdir()
    path = upload(tmp_path, "big.csv", 1500)
    seen = []
    real = dv.tokenize
    monkeypatch.setattr(dv, "tokenize", lambda frame, *a: seen.append(len(frame)) or real(frame, *a))
    with pytest.raises(AdapterError, match="big.csv has 1,500 rows; this studio reads at most 1,000"):
        dv.inspect_data(str(path), "classification", tokenizer=tokenizer, max_rows=1000)
    assert seen == []
    info = dv.inspect_data(str(path), "classification", tokenizer=tokenizer, max_rows=2000, sample_rows=200)
    assert seen == [200, 200] and info["rows"] == 1500
    assert "Token lengths are from a random sample of 200 of the 1,500 rows." in info["summary"]


# Uploads and downloads on disk ---------------------------------------------------------------------------------
def test_a_zip_counts_against_the_quota_at_its_unpacked_size(tmp_path):
    studio = Studio(tmp_path / "home", Policy(public=True, max_bytes_per_owner=2 * 2**20))
    studio.upload_roots = [tmp_path]
    weights = bytes(random.Random(0).choices(b"abcd", k=3 * 2**20))  # packs to about a quarter
    archive = tmp_path / "adapter.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/adapter_config.json", "{}")
        z.writestr("a/adapter_model.safetensors", weights)
    assert archive.stat().st_size < 2**20  # the packed size fits the 2 MB quota; the unpacked does not
    with pytest.raises(AdapterError, match=r"Your adapters take 0 MB; this adds 3.0 MB; the limit is 2 MB"):
        studio.upload([archive], "hf:a")
    assert studio.library.total_usage() == (0, 0)
    assert not [p for p in studio.library.root.rglob("*") if p.is_file()]  # nothing staged or left behind
    studio.jobs.close(timeout=10)


def test_the_downloads_area_keeps_to_its_caps_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "DOWNLOADS", tmp_path / "downloads")
    _, folder = tiny_adapter(tmp_path / "made")
    probe = Studio(tmp_path / "probe", Policy.local())
    probe.library.publish(folder, "route")
    size = probe.download("route").stat().st_size
    shutil_rmtree(tmp_path / "downloads")
    policy = Policy(public=True, max_downloads_bytes=int(2.5 * size), max_downloads_per_owner=2)
    studio = Studio(tmp_path / "home", policy)
    zips = {}
    for i, owner in enumerate(("hf:a", "hf:b", "hf:c")):
        studio.library.publish(folder, "route", owner=owner)
        zips[owner] = studio.download("route", owner)
        os.utime(zips[owner].parent, (time.time() - 100 + i, time.time() - 100 + i))  # a, then b, then c
    assert not zips["hf:a"].exists() and zips["hf:b"].exists() and zips["hf:c"].exists()  # the oldest went
    again = [studio.download("route", "hf:c") for _ in range(2)]
    assert not zips["hf:c"].exists() and not again[0].exists() and again[1].exists()
    assert zips["hf:b"].exists()  # one who asks again and again pushes out their own zips first
    for s in (probe, studio):
        s.jobs.close(timeout=10)


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# Names: one namespace per owner --------------------------------------------------------------------------------
def test_two_owners_hold_one_name_and_neither_learns_of_the_other(tmp_path):
    studio = Studio(tmp_path / "home", Policy(public=True))
    alice, bob, carol = "hf:alice", "hf:bob", "hf:carol"
    publish_random(studio, "minilm", "example", "classification", LABELS, seed=3)  # shared
    publish_random(studio, "minilm", "router", "classification", LABELS, seed=1, owner=alice)
    assert publish_random(studio, "minilm", "router", "classification", LABELS, seed=2, owner=bob).name == "router"
    publish_random(studio, "minilm", "draft", "classification", LABELS, seed=4, owner=carol)
    assert studio.rename("draft", "router", carol).name == "router"  # alice's and bob's names are not carol's
    messages = []
    for call in (
        lambda: studio.rename("router", "example", carol),
        lambda: studio.library.publish(studio.library.get("router", carol).path, "router", carol).name,
    ):
        try:
            messages.append(str(call()))
        except AdapterError as e:
            messages.append(str(e))
    assert messages == ["'example' is the name of a shared example; pick another name.", "router-2"]
    with pytest.raises(AdapterError, match="^You already have an adapter named 'router-2'; pick another name.$"):
        studio.rename("router", "router-2", carol)
    assert [m["id"] for m in studio.dispatcher.models(bob)] == ["example", "router"]
    # One base serves all three routers at once, each owner's own weights.
    text = ["Where is my parcel?"]
    first = {o: studio.classify("router", text, o)[0].probabilities for o in (alice, bob, carol)}
    assert len({json.dumps(p, sort_keys=True) for p in first.values()}) == 3
    assert {o: studio.classify("router", text, o)[0].probabilities for o in (alice, bob, carol)} == first
    assert {e.owner for e in (studio.library.get("router", o) for o in (alice, bob, carol))} == {alice, bob, carol}
    studio.jobs.close(timeout=10)


def test_libraries_of_the_earlier_layout_move_into_namespaces_with_their_owners(tmp_path):
    root = tmp_path / "home" / "adapters"
    _, folder = tiny_adapter(tmp_path / "made")
    for name, owner in (("mine", "hf:alice"), ("shared", None), ("dup", "hf:bob")):
        (root / name).mkdir(parents=True)
        for f, data in folder_files(folder, ("adapter_config.json", "adapter_model.safetensors")).items():
            (root / name / f).write_bytes(data)
        if owner:
            (root / name / OWNER_FILE).write_text(owner + "\n")
    bobs = Library(tmp_path / "other")
    bobs.publish(folder, "dup", owner="hf:bob")
    (root / ".owners").mkdir()
    os.rename(bobs.home("hf:bob"), root / ".owners" / bobs.home("hf:bob").name)  # bob already has a 'dup'
    lib = Library(tmp_path / "home")  # a restart migrates
    assert lib.get("mine", "hf:alice").path.parent == lib.home("hf:alice") and not (root / "mine").exists()
    assert lib.names(owner="hf:alice") == ["mine", "shared"] and lib.get("mine", "hf:alice").owner == "hf:alice"
    assert lib.names(owner="hf:carol") == ["shared"]
    assert (root / "dup").is_dir() and lib.get("dup", "hf:bob").path.parent == lib.home("hf:bob")  # kept aside
    assert lib.names(owner="hf:bob") == ["dup", "shared"]
    assert lib.names() == ["dup", "mine", "shared"]  # local mode sees everything


# The gate on /v1, and keys ----------------------------------------------------------------------------------------
def test_v1_requests_in_flight_are_a_fair_share_per_address():
    """The gate in front of /v1 (httpx over ASGI): one address holds at most a quarter of the 64 places,
    however many keys it has; another address is not held up."""
    import asyncio

    from studio.gate import Gate

    started, release = [], asyncio.Event()

    async def slow_api(scope, receive, send):
        started.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gate = Gate(slow_api, blocks=None, policy=Policy(public=True, trust_forwarded=True), largest_file=2**20)

    async def flood():
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
            post = lambda who: client.post("/v1/chat/completions", headers={"X-Forwarded-For": who})  # noqa: E731
            held = [asyncio.create_task(post("203.0.113.7")) for _ in range(16)]
            await asyncio.sleep(0.2)
            refused = await post("203.0.113.7")
            other = asyncio.create_task(post("198.51.100.2"))
            await asyncio.sleep(0.2)
            release.set()
            return refused, await asyncio.gather(*held), await other

    refused, held, other = asyncio.run(flood())
    assert refused.status_code == 429 and "Your network has 16 requests in progress" in refused.text
    assert [r.status_code for r in held] == [200] * 16 and other.status_code == 200 and len(started) == 17


def test_uploads_to_gradio_s_cache_are_bounded_per_address_before_a_byte_is_stored():
    """Gradio keeps uploaded files for an hour before any handler sees them: the gate lets one address have
    2 uploads in flight and its hourly bytes, charged at the declared size; another address is not held."""
    import asyncio

    from studio.gate import Gate

    stored, release = [], asyncio.Event()

    async def gradio(scope, receive, send):  # stands in for Gradio's /upload: reads the body, then waits
        body = b""
        while (message := await receive())["type"] == "http.request":
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        stored.append(len(body))
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[]"})

    policy = Policy(public=True, trust_forwarded=True, max_upload_bytes_per_address=5 * MB)
    gate = Gate(gradio, blocks=None, policy=policy, largest_file=2 * MB)

    async def uploads():
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
            post = lambda who, n: client.post(  # noqa: E731
                "/gradio_api/upload", content=b"x" * n, headers={"X-Forwarded-For": who}
            )
            held = [asyncio.create_task(post("203.0.113.7", 2 * MB)) for _ in range(2)]
            await asyncio.sleep(0.2)
            third = await post("203.0.113.7", 10)  # two in flight already
            other = asyncio.create_task(post("198.51.100.2", 10))
            await asyncio.sleep(0.2)
            release.set()
            done = await asyncio.gather(*held), await other
            over = await post("203.0.113.7", 2 * MB)  # 4 MB charged this hour: 6 would pass the 5 MB budget
            small = await post("203.0.113.7", MB // 2)
            return third, done, over, small

    third, (held, other), over, small = asyncio.run(uploads())
    assert third.status_code == 429 and "Your network has 2 uploads in progress" in third.text
    assert [r.status_code for r in held] == [200, 200] and other.status_code == 200
    assert over.status_code == 429 and "uploaded 5 MB to this studio within the hour" in over.text
    assert small.status_code == 200
    assert sorted(stored) == [10, MB // 2, 2 * MB, 2 * MB]  # nothing of a refused upload reached Gradio


def test_an_upload_budget_renews_as_the_hour_passes():
    from studio.upload_budget import UploadBudget

    now = [0.0]
    budget = UploadBudget(max_bytes=3 * MB, largest_file=2 * MB, clock=lambda: now[0])
    assert budget.refusal("a", 2 * MB) is None
    budget.done("a")
    assert "within the hour" in budget.refusal("a", None)  # no declared size: charged the largest file
    now[0] = 3601.0
    assert budget.refusal("a", None) is None


def test_an_api_key_needs_a_sign_in_in_public_mode(public):
    from studio import use_view

    with pytest.raises(AdapterError, match="An API key needs a Hugging Face sign-in"):
        use_view.api_help(public, "session:raw-queue-call", "http://studio")  # a free identity gets no key
    with pytest.raises(AdapterError, match="An API key needs a Hugging Face sign-in"):
        use_view.revoke_and_help(public, "session:raw-queue-call", "http://studio")  # nor revokes one
    assert not (public.home / "api_keys.json").exists()  # and writes nothing
    assert "http://studio/v1" in use_view.api_help(public, "hf:alice", "http://studio")  # signed in: a key


def test_a_run_on_a_file_over_the_row_cap_is_refused_at_submit(tmp_path, fake_trainer):
    """The submit reads the data under the studio's own row cap, before anything is queued or written."""
    studio = Studio(tmp_path / "home", Policy(public=True, max_data_rows=20))
    studio.upload_roots = [tmp_path / "uploads"]
    (tmp_path / "uploads").mkdir()
    with pytest.raises(AdapterError, match="big.csv has 21 rows; this studio reads at most 20"):
        studio.submit(quick(data=str(upload(tmp_path, "big.csv", 21))), Caller("hf:a", "192.0.2.1"))
    assert studio.jobs.jobs() == [] and not any((studio.home / "runs").glob("*"))
    studio.submit(quick(data=str(upload(tmp_path, "fits.csv", 20))), Caller("hf:a", "192.0.2.1"))  # at the cap: taken
    assert len(studio.jobs.jobs()) == 1
    studio.jobs.close(timeout=30)
