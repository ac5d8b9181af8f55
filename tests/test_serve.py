"""The OpenAI-compatible server, through real clients: the official `openai` package, `httpx`, and the
curl lines of docs/serving.md, against `python -m adapter_core serve`'s app running under uvicorn."""

import concurrent.futures as cf
import json
import re
import shlex
import subprocess
import threading
import time
import types
from contextlib import contextmanager

import httpx
import openai
import pytest
import uvicorn
from helpers import ROOT, free_port, raw_post, wait_for
from studio_fixtures import publish_fixed_router, publish_random

from adapter_core.serve.app import build_server
from studio.library import Library

pytestmark = pytest.mark.slow
BASE = "smollm2-135m-instruct"
KEY = "test-key-123"
HELLO = [{"role": "user", "content": "Where is my parcel? It was due on Monday."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    studio = types.SimpleNamespace(home=home, library=Library(home))
    publish_random(studio, BASE, "orders", "instruction", seed=1)
    publish_random(studio, BASE, "billing", "instruction", seed=2)
    publish_fixed_router(studio, "router", ["orders", "billing", "tech"], "orders")
    app = build_server(studio.library.root, router="router", api_key=KEY)
    port = free_port()
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not runner.started and time.time() < deadline:
        time.sleep(0.05)
    dispatcher = app.state.dispatcher
    yield types.SimpleNamespace(url=f"http://127.0.0.1:{port}", dispatcher=dispatcher, library=studio.library)
    runner.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def ask(client, model="orders", messages=HELLO, **kw):
    kw.setdefault("max_tokens", 24)
    return client.chat.completions.create(model=model, messages=messages, temperature=0, **kw)


def test_models_lists_adapters_bases_and_auto(client):
    ids = {m.id: m for m in client.models.list()}
    assert {"orders", "billing", "router", BASE, "auto"} <= set(ids)
    assert ids["orders"].model_extra["task"] == "instruction"
    assert ids["router"].model_extra["task"] == "classification"


def test_plain_and_streamed_answers_are_the_same_greedy_text(client):
    plain = ask(client)
    text = plain.choices[0].message.content
    assert text and plain.model == "orders"
    assert plain.usage.prompt_tokens > 0 and 0 < plain.usage.completion_tokens <= 24
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    assert plain.choices[0].finish_reason in ("stop", "length")
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1  # token by token, not one block
    assert "".join(pieces) == text
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]


def test_adapters_answer_differently_from_each_other_and_the_base(client):
    answers = {m: ask(client, m).choices[0].message.content for m in ("orders", "billing", BASE)}
    assert len(set(answers.values())) == 3


def test_stop_strings_and_max_tokens(client):
    full = ask(client, max_tokens=24).choices[0].message.content
    word = full.split()[2]
    cut = ask(client, max_tokens=24, stop=[word]).choices[0]
    assert cut.message.content == full[: full.index(word)] and cut.finish_reason == "stop"
    short = ask(client, max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_unknown_model_is_404_and_chat_on_a_classifier_is_400(client):
    with pytest.raises(openai.NotFoundError) as e:
        ask(client, "no-such-adapter")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "router")
    assert "classification adapter: it classifies and cannot chat" in e.value.body["message"]


def test_bad_requests_are_400_in_openai_shape(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="orders", messages=HELLO, temperature=7)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="orders", messages=[{"role": "assistant", "content": "hi"}])
    assert "last message must be the user's" in e.value.body["message"]


def test_auto_routes_to_the_department_and_says_so(client):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO, max_tokens=8, temperature=0)
    reply = raw.parse()
    assert reply.model == "orders"
    route = reply.model_extra["route"]
    assert route["router"] == "router" and route["label"] == "orders" and route["fallback"] is False
    assert raw.headers["x-route-label"] == "orders" and float(raw.headers["x-route-confidence"]) > 0.9
    assert reply.choices[0].message.content == ask(client, "orders", max_tokens=8).choices[0].message.content


# A decision on the top probability (msp: 1 - confidence), with a curve of thresholds by false-rejection
# rate: at 0.5, any message the router is less than 100% sure of is out of scope.
DECISION = {
    "score": "msp",
    "threshold": 0.5,
    "false_rejection": 0.05,
    "curve": {"false_rejection": [0.0, 0.05, 0.5], "threshold": [1.0, 0.5, 0.0]},
}


@contextmanager
def decision(server, section):
    """The router's saved out-of-scope decision replaced by `section` for the block."""
    entry = server.library.get("router")
    meta = json.loads((entry.path / "adapter_config.json").read_text())
    (entry.path / "adapter_config.json").write_text(json.dumps({**meta, "out_of_scope": section}))
    try:
        yield
    finally:
        (entry.path / "adapter_config.json").write_text(json.dumps(meta))


def test_auto_falls_back_out_of_scope_to_the_base_or_a_message(client, server):
    with decision(server, DECISION):
        assert ask(client, "auto", max_tokens=4).model_extra["route"]["fallback"] is False  # 98.7% sure
        reply = ask(client, "auto", max_tokens=8, extra_body={"route_false_rejection": 0.5})
        assert reply.model == BASE and reply.model_extra["route"]["fallback"] is True
        route = reply.model_extra["route"]
        assert route["in_scope"] is False and route["threshold"] == 0.0 and 0 < route["ood_score"] < 0.02
        assert "out-of-scope score" in route["reason"] and "above the router's threshold" in route["reason"]
        server.dispatcher.fallback = "A person from our team will answer you shortly."
        try:
            reply = ask(client, "auto", extra_body={"route_false_rejection": 0.5})
            streamed = list(ask(client, "auto", stream=True, extra_body={"route_false_rejection": 0.5}))
        finally:
            server.dispatcher.fallback = None
    assert reply.model == "fallback" and reply.model_extra["route"]["fallback"] is True
    assert reply.choices[0].message.content == "A person from our team will answer you shortly."
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == reply.choices[0].message.content


def test_a_router_s_saved_decision_is_used_old_or_new(client, server):
    auth = {"Authorization": f"Bearer {KEY}"}
    legacy = {"threshold": 0.999, "in_scope_recall": 0.95, "validation_rows": 10}  # a confidence, before scores
    with decision(server, legacy):
        route = ask(client, "auto", max_tokens=4).model_extra["route"]
        assert route["threshold"] == pytest.approx(0.001) and route["fallback"] is True
        out = httpx.post(server.url + "/v1/classify", json={"model": "router", "input": "hello"}, headers=auth).json()
        assert out["score"] == "msp" and out["data"][0]["in_scope"] is False
        assert out["data"][0]["ood_score"] == pytest.approx(1 - out["data"][0]["confidence"], abs=1e-4)
    with decision(server, {**DECISION, "threshold": 0.0}):
        out = httpx.post(server.url + "/v1/classify", json={"model": "router", "input": "hello"}, headers=auth).json()
        assert out["threshold"] == 0.0 and out["false_rejection"] == 0.05 and out["data"][0]["in_scope"] is False
        kept = httpx.post(
            server.url + "/v1/classify", json={"model": "router", "input": "a", "false_rejection": 0}, headers=auth
        ).json()
        assert kept["threshold"] == 1.0 and kept["false_rejection"] == 0 and kept["data"][0]["in_scope"] is True


def test_classify_over_httpx(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    out = httpx.post(server.url + "/v1/classify", json={"model": "router", "input": ["a", "b"]}, headers=auth).json()
    assert out["model"] == "router" and [d["index"] for d in out["data"]] == [0, 1]
    first = out["data"][0]
    assert first["label"] == "orders" and set(first["probabilities"]) == {"orders", "billing", "tech"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-5
    assert first["in_scope"] is True and first["ood_score"] is None and out["score"] is None  # no decision saved
    old = httpx.post(
        server.url + "/v1/classify", json={"model": "router", "input": "a", "threshold": 0.5}, headers=auth
    )
    assert old.status_code == 400 and "send false_rejection" in old.json()["error"]["message"]
    wrong = httpx.post(server.url + "/v1/classify", json={"model": "orders", "input": "a"}, headers=auth)
    assert wrong.status_code == 400 and "instruction adapter" in wrong.json()["error"]["message"]


def test_the_key_is_required(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.get(server.url + "/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.post(server.url + "/v1/classify", json={"model": "router", "input": "a"})
    assert r.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()


def test_a_full_queue_is_429(client, server, monkeypatch):
    monkeypatch.setattr(server.dispatcher.limits, "max_in_flight_per_owner", 0)
    with pytest.raises(openai.RateLimitError):
        ask(client)


def test_eight_concurrent_clients_share_batches_and_get_their_own_answers(client, server):
    questions = [("orders" if i % 2 else "billing", f"Question {i}: where is order {1000 + i}?") for i in range(8)]

    def one(q):
        return ask(client, q[0], [{"role": "user", "content": q[1]}], max_tokens=16).choices[0].message.content

    t = time.perf_counter()
    alone = [one(q) for q in questions]
    one_at_a_time = time.perf_counter() - t
    batcher = server.dispatcher.batcher(server.dispatcher.pool.get(BASE))
    before = (batcher.batches, batcher.rows)
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, questions))
    concurrent = time.perf_counter() - t
    assert together == alone
    batches, rows = batcher.batches - before[0], batcher.rows - before[1]
    assert rows == 8 and batches <= 3, f"8 requests ran in {batches} batches"
    assert concurrent < one_at_a_time, (concurrent, one_at_a_time)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_a_client_that_goes_away_stops_its_row(server, monkeypatch, stream):
    dispatcher = server.dispatcher
    batcher = dispatcher.batcher(dispatcher.pool.get(BASE))
    before = batcher.cancelled
    seen, prepare = [], dispatcher.prepare
    monkeypatch.setattr(dispatcher, "prepare", lambda *a, **k: seen.append(prepare(*a, **k)) or seen[-1])
    body = {"model": "orders", "messages": HELLO, "max_tokens": 400, "temperature": 1.0, "stream": stream}
    sock = raw_post(server.url, "/v1/chat/completions", body, {"Authorization": f"Bearer {KEY}"})
    wait_for(lambda: seen and len(seen[0].row.tokens) >= 3, 120, what="the answer to start")
    sock.close()  # hang up: the row ends at its next decoding step, and its place is free
    wait_for(lambda: batcher.cancelled == before + 1, 10, what="the row to be cancelled")
    row = seen[0].row
    assert row.finish_reason == "cancelled" and len(row.tokens) < 400
    wait_for(lambda: dispatcher.places.total == 0, 5, what="the place to come back")


def readme_curls() -> list[str]:
    text = (ROOT / "docs" / "serving.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [c.replace("\\\n", " ") for block in blocks for c in block.split("\n\n")]
    return [c.strip() for c in commands if c.strip().startswith("curl")]


def test_the_readme_curl_examples_work(server):
    curls = readme_curls()
    assert len(curls) >= 3
    env = {"PATH": "/usr/bin:/bin", "ADAPTER_STUDIO_API_KEY": KEY}
    for command in curls:
        command = command.replace("http://localhost:8000", server.url)
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, (command, out.stderr)
        body = out.stdout.strip()
        if body.startswith("{"):
            assert "error" not in json.loads(body), (command, body)
        else:
            assert body.endswith("data: [DONE]"), (command, body[-200:])
    assert any("model" in c and "auto" in c for c in curls)
    assert shlex.split(curls[0])[0] == "curl"
