"""A hostile caller against the HTTP API (/v1) of a running public studio and of `serve`: forged, revoked
and malformed keys, huge and malformed bodies, many rows at once, and clients that hang up.

Every case asserts the refusal and that nothing changed. The studio serves a tiny random Llama over
SmolLM2's tokenizer in place of SmolLM2 (and the real MiniLM as its router), so that generation is
fast, or as slow as a test needs it to be. The list of cases is in docs/hosting.md ("What a hostile
visitor gets").
"""

import logging
import stat
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import openai
import pytest
import torch
from fastapi.testclient import TestClient
from gradio_client import Client
from helpers import free_port, raw_post, tiny_llama, wait_for
from share_fixtures import tiny_adapter
from studio_fixtures import publish_fixed_router
from transformers import AutoTokenizer

from adapter_core import AdapterConfig, Base, adapter_parameters, add_adapter, load_base, save_adapter
from adapter_core.cli import main
from adapter_core.paths import model_cache
from adapter_core.serve import Dispatcher, Limits, ModelPool, create_app, static_key
from adapter_core.serve.app import build_server, catalog_base, open_warning
from studio.keys import KeyRing, browser_secret, owner_of, personal_key, signing_secret
from studio.library import Library
from studio.policy import Policy
from studio.service import Studio
from studio.ui import build_app, launch
from studio.use_view import revoke_and_help

BASE = "smollm2-135m-instruct"
VICTIM, ATTACKER = "hf:victim", "anon:attacker-token-aaaaaaaaaaaaaaaaaaaa"
HELLO = [{"role": "user", "content": "Where is my parcel?"}]
MB = 2**20


def smollm2_tokenizer():
    folder = model_cache() / BASE
    if not (folder / "source.json").is_file():  # not converted yet on this machine: load it once
        return load_base(BASE).tokenizer
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


class TinyPool(ModelPool):
    """The studio's pool, with a tiny Llama standing in for SmolLM2 (other bases load as usual)."""

    def __init__(self, tiny: Base, **kwargs):
        super().__init__(**kwargs)
        self.tiny = tiny

    def get(self, name: str) -> Base:
        return self.tiny if self.allow(name) == BASE else super().get(name)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = smollm2_tokenizer()
    model = tiny_llama(tokenizer, hidden=32, layers=2)
    model.config.max_position_embeddings = 4096  # room for long answers; rotary positions do not mind
    delay = {"s": 0.0}  # seconds each decoding step takes: a test that needs a long answer raises it
    model.register_forward_pre_hook(lambda *_: time.sleep(delay["s"]) if delay["s"] else None)
    base = Base(BASE, model, tokenizer, "decoder")
    base.delay = delay
    return base


def publish_tiny(studio, tiny: Base, name: str, owner=None, seed=0):
    """An instruction adapter with random weights on the tiny stand-in for SmolLM2."""
    add_adapter(tiny.model, name, AdapterConfig(bottleneck=8), task="instruction")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(tiny.model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    folder = Path(studio.home) / "scratch" / name
    save_adapter(tiny.model, name, folder, extra={"base_model": BASE})
    return studio.library.publish(folder, name, owner=owner)


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny):
    home = tmp_path_factory.mktemp("hostile-api")
    studio = Studio(home, policy=Policy(public=True))
    studio.bases = TinyPool(tiny, allow=studio.policy.check_model, budget_bytes=studio.policy.model_budget_bytes)
    studio.dispatcher.pool = studio.bases
    publish_tiny(studio, tiny, "victim-orders", owner=VICTIM, seed=1)
    publish_tiny(studio, tiny, "orders", seed=2)  # a shared example department
    publish_fixed_router(studio, "router", ["orders", "billing"], "orders")
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    yield studio, f"http://127.0.0.1:{port}"
    demo.close()


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns) for p in home.rglob("*") if p.is_file()}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def refused_401(url: str, headers: dict) -> None:
    r = httpx.get(url + "/v1/models", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text


# Credentials --------------------------------------------------------------------------------------------
def strings_in(value) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*map(strings_in, value.values()), *map(strings_in, value.keys()))
    if isinstance(value, list):
        return set().union(set(), *map(strings_in, value))
    return set()


def test_a_key_minted_from_anything_in_the_public_config_is_refused(app):
    studio, url = app
    before = snapshot(studio.home)
    strings = strings_in(httpx.get(url + "/config").json())
    # The browser-state secret is public by design: it is there, so this test would catch a key signed with it.
    assert browser_secret(studio.home) in strings and signing_secret(studio.home) not in strings
    with httpx.Client(base_url=url) as client:
        for s in strings:
            r = client.get("/v1/models", headers=auth(personal_key(s, VICTIM)))
            assert r.status_code == 401, (s, r.text)
        # The victim's own key works, and sees their adapter: the refusals above were about the secret.
        mine = client.get("/v1/models", headers=auth(KeyRing(studio.home).key(VICTIM)))
        assert mine.status_code == 200 and "victim-orders" in {m["id"] for m in mine.json()["data"]}
    assert snapshot(studio.home) == before


def test_the_two_secrets_are_apart_private_and_set_by_their_own_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("ADAPTER_STUDIO_SECRET", raising=False)
    monkeypatch.delenv("ADAPTER_STUDIO_KEY_SECRET", raising=False)
    signing, browser = signing_secret(tmp_path), browser_secret(tmp_path)
    assert signing != browser and signing_secret(tmp_path) == signing  # made once, kept
    for name in (".api_key_secret", ".browser_secret"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    monkeypatch.setenv("ADAPTER_STUDIO_SECRET", "browser-one")
    monkeypatch.setenv("ADAPTER_STUDIO_KEY_SECRET", "signing-one")
    assert (browser_secret(tmp_path), signing_secret(tmp_path)) == ("browser-one", "signing-one")
    monkeypatch.setenv("ADAPTER_STUDIO_KEY_SECRET", "browser-one")
    with pytest.raises(Exception, match="must differ from ADAPTER_STUDIO_SECRET"):
        signing_secret(tmp_path)


def test_a_revoked_key_is_refused_and_the_new_one_works(app):
    studio, url = app
    ring = KeyRing(studio.home)
    old, attacker = ring.key(VICTIM), ring.key(ATTACKER)
    assert httpx.get(url + "/v1/models", headers=auth(old)).status_code == 200
    text = revoke_and_help(studio, VICTIM, url)  # Use -> API -> "Revoke my key and make a new one"
    new = text.split("```\n", 1)[1].split("\n", 1)[0]
    assert new != old and "old key no longer works" in text
    refused_401(url, auth(old))
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key=old, max_retries=0).models.list()
    client = openai.OpenAI(base_url=url + "/v1", api_key=new, max_retries=0, timeout=60)
    assert "victim-orders" in {m.id for m in client.models.list()}
    assert httpx.get(url + "/v1/models", headers=auth(attacker)).status_code == 200  # others' keys live on
    assert KeyRing(studio.home).owner_of(new) == VICTIM  # a fresh ring (another replica) agrees
    assert personal_key(signing_secret(studio.home), VICTIM) == old  # generation 0 signs no more
    assert owner_of(signing_secret(studio.home), old, ring.generation(VICTIM)) is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer as-dmljdGlt.é0000000000000000000000000000000000000".encode("latin-1"),
        "Bearer clé".encode("latin-1"),
        b"Bearer \xff\xfe\xfd",
        b"Bearer as-" + b"A" * 8000 + b".0000000000000000000000000000000000000000",
        b"Bearer as-!!!.0000000000000000000000000000000000000000",
        b"Bearer as-aGY6dmljdGlt",  # no signature
        b"Bearer sk-aGY6dmljdGlt.0000000000000000000000000000000000000000",
        b"Bearer as-\xc3\xa9.0000000000000000000000000000000000000000",
        b"Bearer",
        b"Basic dXNlcjpwYXNz",
    ],
    ids=lambda header: ascii(header[:40]),
)
def test_malformed_keys_get_401_and_no_traceback(app, header, caplog):
    studio, url = app
    before = snapshot(studio.home)
    with caplog.at_level(logging.WARNING):
        r = httpx.get(url + "/v1/models", headers=[(b"Authorization", header)])
    assert r.status_code == 401 and "personal API key" in r.json()["error"]["message"], r.text
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]
    assert snapshot(studio.home) == before


def test_a_shared_operator_key_is_compared_as_bytes(caplog):
    authorize = static_key("operator-key")
    for token in ("operator-kéy", "\udcff", "x" * 100_000, None, ""):
        with pytest.raises(Exception, match="API key"):
            authorize(token)
    assert authorize("operator-key") is None and not caplog.records


# Bounded before work -------------------------------------------------------------------------------------
def body_chunks(total: int, size: int = 64 * 1024):
    chunk = b"x" * size  # one buffer, sent again and again: the client holds 64 KB, never the body
    for _ in range(total // size):
        yield chunk


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "key"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_100_mb_body_costs_under_10_mb(app, declared, keyed):
    """Without a key it is refused at the headers (401, nothing read); with one, at the body cap (413)."""
    studio, url = app
    before = snapshot(studio.home)
    headers = {"Content-Type": "application/json"}
    if keyed:
        headers.update(auth(KeyRing(studio.home).key(ATTACKER)))
    if declared:
        headers["Content-Length"] = str(100 * MB)
    tracemalloc.start()
    try:
        start = time.monotonic()
        r = httpx.post(url + "/v1/chat/completions", content=body_chunks(100 * MB), headers=headers, timeout=60)
        took = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if keyed:
        assert r.status_code == 413 and "limit of 1,048,576 bytes" in r.json()["error"]["message"], r.text
    else:
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
    assert peak < 10 * MB, f"the server held {peak / MB:.1f} MB"
    print(
        f"100 MB body ({'declared' if declared else 'chunked'}): {r.status_code} in {took:.2f} s, peak {peak / MB:.2f} MB"
    )
    assert snapshot(studio.home) == before


def test_malformed_json_gets_a_clear_400(app):
    studio, url = app
    key = KeyRing(studio.home).key(ATTACKER)
    for body in (b'{"model": "orders", "messages": [', b"{'model': 'orders'}", b"\xff\xfe", b"{} {}"):
        r = httpx.post(
            url + "/v1/chat/completions", content=body, headers={**auth(key), "Content-Type": "application/json"}
        )
        error = r.json()["error"]
        assert r.status_code == 400 and error["message"].startswith("The request body is not valid JSON"), r.text
        assert "JSON decode error" not in error["message"] and error["param"] is None
        # Without a key the body is never read: the refusal is the key's, whatever the body holds
        r = httpx.post(url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text


# Rows count ---------------------------------------------------------------------------------------------
def test_route_many_rows_count_against_the_per_visitor_limit(app):
    studio, url = app
    cap = studio.dispatcher.limits.max_in_flight_per_owner
    client = Client(url + "/", verbose=False)
    before = snapshot(studio.home)
    many = "\n".join(f"Where is parcel {i}?" for i in range(cap + 1))
    with pytest.raises(Exception, match=f"at most {cap} of one caller's messages at a time") as info:
        client.predict("router", many, 0, "", api_name="/route_many")
    assert f"You asked for {cap + 1} answers at once" in str(info.value)
    assert snapshot(studio.home) == before and not studio.dispatcher.places.total
    table = client.predict("router", "\n".join(many.splitlines()[:cap]), 0, "", api_name="/route_many")
    assert [r[table["headers"].index("answered by")] for r in table["data"]] == ["orders"] * cap
    # Held places add up with the ones a call asks for: one answer in progress leaves cap - 1.
    studio.dispatcher.places.take(VICTIM)
    try:
        with pytest.raises(Exception, match=f"You asked for {cap} answers with 1 in progress"):
            studio.route_and_answer("router", many.splitlines()[:cap], owner=VICTIM)
    finally:
        studio.dispatcher.places.give_back(VICTIM)
    wait_for(lambda: not studio.dispatcher.places.total, 10, what="every place to be given back")


# Cancellation -------------------------------------------------------------------------------------------
def recorded(dispatcher, monkeypatch) -> list:
    """Every answer the dispatcher prepares from now on."""
    seen, prepare = [], dispatcher.prepare
    monkeypatch.setattr(dispatcher, "prepare", lambda *a, **k: seen.append(prepare(*a, **k)) or seen[-1])
    return seen


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_dropped_client_frees_its_place_within_two_seconds(app, tiny, monkeypatch, stream):
    studio, url = app
    dispatcher, key = studio.dispatcher, KeyRing(studio.home).key(ATTACKER)
    monkeypatch.setattr(dispatcher.limits, "max_in_flight_per_owner", 1)
    monkeypatch.setitem(tiny.delay, "s", 0.02)  # 500 tokens would take 10 s
    seen = recorded(dispatcher, monkeypatch)
    body = {"model": "orders", "messages": HELLO, "max_tokens": 500, "temperature": 1.0, "stream": stream}
    sock = raw_post(url, "/v1/chat/completions", body, auth(key))
    row = wait_for(lambda: seen and len(seen[0].row.tokens) >= 5 and seen[0].row, 60, what="the answer to start")
    blocked = httpx.post(url + "/v1/chat/completions", json={**body, "max_tokens": 1}, headers=auth(key))
    assert blocked.status_code == 429 and "at most 1 of one caller's messages" in blocked.text
    sock.close()  # hang up
    hung_up = time.monotonic()
    wait_for(lambda: dispatcher.places.held(ATTACKER) == 0, 10, every=0.01, what="the place to be given back")
    freed = time.monotonic() - hung_up
    monkeypatch.setitem(tiny.delay, "s", 0.0)
    again = httpx.post(url + "/v1/chat/completions", json={**body, "max_tokens": 2, "stream": False}, headers=auth(key))
    assert again.status_code == 200, again.text
    assert row.finish_reason == "cancelled" and len(row.tokens) < 250, (row.finish_reason, len(row.tokens))
    assert freed < 2.0, f"the place came back {freed:.2f} s after the client hung up"
    print(
        f"dropped client ({'streamed' if stream else 'whole'}): place back in {freed:.2f} s, {len(row.tokens)} tokens"
    )


def bare(tiny: Base, folder: Path, limits: Limits | None = None) -> Dispatcher:
    """A dispatcher over an empty library that chats with the tiny stand-in for SmolLM2, bare."""
    return Dispatcher(Library(folder), TinyPool(tiny), limits or Limits(), bare_bases=lambda: [BASE])


def test_a_cancelled_row_that_still_waits_ends_at_once(tiny, tmp_path):
    """Behind a long batch, a request whose client left gives its place back now, not when its turn comes."""
    dispatcher = bare(tiny, tmp_path, Limits(max_batch=1))
    tiny.delay["s"] = 0.02
    try:
        first = dispatcher.chat(BASE, HELLO, owner="a", max_tokens=200)
        second = dispatcher.chat(BASE, HELLO, owner="b", max_tokens=200)
        wait_for(lambda: first.answer.row.tokens, 30, what="the first answer to start")
        assert dispatcher.places.held("b") == 1 and not second.answer.row.tokens
        dispatcher.cancel(second.answer)
        assert dispatcher.places.held("b") == 0 and second.answer.row.finish_reason == "cancelled"
        assert second.text() == "" and not second.answer.row.tokens
        dispatcher.cancel(first.answer)
        first.text()
        assert first.answer.row.finish_reason == "cancelled" and dispatcher.places.held("a") == 0
    finally:
        tiny.delay["s"] = 0.0


# Stand-alone serve ----------------------------------------------------------------------------------------
def test_serve_keeps_a_public_studio_s_limits():
    served, studio = Limits(), Policy(public=True).serve_limits()
    for field in ("max_in_flight_per_owner", "max_prompt_chars", "max_new_tokens", "max_body_bytes"):
        assert getattr(served, field) == getattr(studio, field), field


def test_serve_counts_places_per_client_address(tiny, tmp_path):
    dispatcher = bare(tiny, tmp_path)
    client = TestClient(create_app(dispatcher, static_key(None)))
    cap = Limits().max_in_flight_per_owner
    dispatcher.places.take(("address", "testclient"), cap)
    body = {"model": BASE, "messages": HELLO, "max_tokens": 2}
    try:
        r = client.post("/chat/completions", json=body)
        assert r.status_code == 429 and f"at most {cap} of one caller's messages" in r.json()["error"]["message"]
    finally:
        dispatcher.places.give_back(("address", "testclient"), cap)
    assert client.post("/chat/completions", json=body).status_code == 200
    long = {**body, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert "at most 4,000" in client.post("/chat/completions", json=long).json()["error"]["message"]
    assert dispatcher.new_tokens(tiny, 10, 100_000) == 512


def test_serve_refuses_a_base_outside_the_catalog_without_the_flag(tmp_path, capsys):
    library = tmp_path / "lib"
    tiny_adapter(library / "route", name="route")  # a tiny BERT: its files name no catalog model
    before = snapshot(library)
    with pytest.raises(Exception, match="outside the catalog") as info:
        build_server(library)
    assert "--allow-any-base" in str(info.value) and str(tmp_path) not in str(info.value)
    assert main(["serve", "--library", str(library)]) == 2
    assert "--allow-any-base" in capsys.readouterr().err
    app = build_server(library, allow_any_base=True)
    assert {m["id"] for m in TestClient(app).get("/v1/models").json()["data"]} == {"route"}
    with pytest.raises(Exception, match="loads only the catalog's base models"):
        catalog_base("evil/model")
    assert catalog_base(BASE) == BASE and snapshot(library) == before


def test_serve_warns_loudly_on_an_open_address_without_a_key(tmp_path, monkeypatch, capsys, caplog):
    import uvicorn

    assert open_warning("127.0.0.1", None) is None and open_warning("localhost", None) is None
    assert open_warning("::1", None) is None and open_warning("0.0.0.0", "a-key") is None
    for host in ("0.0.0.0", "192.168.1.5", "::", "my-host.example"):
        assert "WARNING" in open_warning(host, None)
    library = tmp_path / "lib"
    library.mkdir()
    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    monkeypatch.delenv("ADAPTER_STUDIO_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="adapter_core.serve"):
        assert main(["serve", "--library", str(library), "--host", "0.0.0.0", "--api-key", ""]) == 0
    err = capsys.readouterr().err
    assert "WARNING: serving on 0.0.0.0 with no API key" in err and ran[0]["host"] == "0.0.0.0"
    assert any("no API key" in r.getMessage() for r in caplog.records)
    assert main(["serve", "--library", str(library), "--api-key", "k", "--host", "0.0.0.0"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert main(["serve", "--library", str(library), "--max-in-flight", "x"]) == 2
    assert main(["serve", "--library", str(library), "--max-in-flight", "0"]) == 2


def test_a_threaded_chat_holds_its_place_until_its_row_ends(tiny, tmp_path):
    """The studio's own pages (chat, route-many, compare) count too: the place is held while the row runs."""
    dispatcher = bare(tiny, tmp_path)
    stop = threading.Event()
    tiny.delay["s"] = 0.01
    try:
        stream = dispatcher.chat(BASE, HELLO, owner=VICTIM, max_tokens=300, cancel=stop)
        assert dispatcher.places.held(VICTIM) == 1
        with pytest.raises(Exception, match="You asked for 8 answers with 1 in progress"):
            dispatcher.chat_many([BASE] * 8, [HELLO] * 8, owner=VICTIM, max_tokens=2)
        assert dispatcher.places.held(VICTIM) == 1
        stop.set()
        stream.text()
    finally:
        tiny.delay["s"] = 0.0
    wait_for(lambda: dispatcher.places.held(VICTIM) == 0, 5, what="the place to come back")


def test_a_studio_chat_whose_page_is_closed_frees_its_place_within_two_seconds(app, tiny, monkeypatch):
    """The Use tab's chat, through Gradio's queue: a visitor who closes the page (the event stream drops)
    stops the row and gives its place back, as a /v1 client that hangs up does."""
    studio, url = app
    chat = next(i for i, f in studio_demo_fns(url).items() if f.get("api_name") == "chat")
    monkeypatch.setitem(tiny.delay, "s", 0.02)  # 500 tokens would take 10 s
    seen = recorded(studio.dispatcher, monkeypatch)
    session = "closed-page"
    join = httpx.post(
        f"{url}/gradio_api/queue/join",
        json={
            "data": [None, "orders", BASE, "hello", []],
            "fn_index": chat,
            "session_hash": session,
            "event_data": None,
            "trigger_id": None,
        },  # fmt: skip
    )
    assert join.status_code == 200, join.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=60) as events:
        for _line in events.iter_lines():  # read until the answer is streaming, then close the page
            if seen and len(seen[0].row.tokens) >= 5:
                break
        assert studio.dispatcher.places.total == 1  # the answer holds its place while the page is open
    closed = time.monotonic()
    wait_for(lambda: studio.dispatcher.places.total == 0, 10, every=0.01, what="the place to be given back")
    freed = time.monotonic() - closed
    row = seen[0].row
    assert row.finish_reason == "cancelled" and len(row.tokens) < 250, (row.finish_reason, len(row.tokens))
    assert freed < 2.0, f"the place came back {freed:.2f} s after the page closed"
    print(f"closed page (studio chat): place back in {freed:.2f} s, {len(row.tokens)} tokens")


def studio_demo_fns(url: str) -> dict[int, dict]:
    """The served app's events by index, from its public /config (what a browser reads)."""
    return {d["id"]: d for d in httpx.get(url + "/config").json()["dependencies"]}
