"""The studio over HTTP with gradio_client, launched in-process: classify, chat, and a bounded load test."""

import json
import statistics
import threading
import time
from dataclasses import replace

import pytest
from gradio_client import Client
from helpers import free_port
from studio_fixtures import publish_fixed_router, publish_random

from adapter_core import generate, load_adapter, load_base
from adapter_core.engine.train import TrainConfig
from studio import train_view as h
from studio.comparison import compare_outputs
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = pytest.mark.slow  # the complete tier: a served studio on real models, driven by gradio_client

LABELS = ["billing", "orders", "tech"]
# The operator's limit on an answer's length: every answer here is clamped to it, and each check compares an
# answer with the same number of tokens generated directly. Short: a SmolLM2 token costs about 40 ms on
# 2 cores, and the wiring these tests check does not need long answers.
ANSWER_TOKENS = 40


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("studio-api"), policy=replace(Policy.local(), max_new_tokens=ANSWER_TOKENS))
    publish_random(studio, "minilm", "router-a", "classification", LABELS, seed=1, scale=0.2)
    publish_random(studio, "minilm", "router-b", "classification", LABELS, seed=2, scale=0.2)
    publish_random(studio, "smollm2-135m-instruct", "orders-style", "instruction", seed=3, scale=0.03)
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    yield studio, f"http://127.0.0.1:{port}/"
    demo.close()


def text_of(message):
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def top(label_output):
    return label_output["label"], [round(c["confidence"], 6) for c in label_output["confidences"]]


def test_classify_through_an_adapter(served):
    studio, url = served
    client = Client(url, verbose=False)
    out = client.predict("router-a", "I was charged twice for my order", api_name="/classify")
    want = studio.classify("router-a", ["I was charged twice for my order"])[0]
    assert out["label"] == want.label
    other = client.predict("router-b", "I was charged twice for my order", api_name="/classify")
    assert top(other) != top(out)  # a different adapter answers differently


def test_chat_streams_the_chosen_adapters_answer(served):
    studio, url = served
    client = Client(url, verbose=False)
    message = "My parcel has not arrived yet."
    history, cleared = client.predict("orders-style", "smollm2-135m-instruct", message, [], api_name="/chat")
    answer = text_of(history[-1])
    assert cleared == "" and text_of(history[0]) == message and answer
    fresh = load_base("smollm2-135m-instruct")
    name = load_adapter(fresh.model, studio.library.get("orders-style").path)
    # The chatbot trims surrounding whitespace of a message; the tokens are the same.
    assert answer.strip() == generate(fresh.model, fresh.tokenizer, message, name, ANSWER_TOKENS).strip()
    bare, _ = client.predict(h.NONE, "smollm2-135m-instruct", message, [], api_name="/chat")
    assert text_of(bare[-1]).strip() == generate(fresh.model, fresh.tokenizer, message, None, ANSWER_TOKENS).strip()
    assert text_of(bare[-1]) != answer


def test_user_errors_come_back_as_messages(served):
    _, url = served
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="No adapter named 'nope' in the library"):
        client.predict("nope", "hello", api_name="/classify")
    with pytest.raises(Exception, match="Type a sentence to classify"):
        client.predict("router-a", "  ", api_name="/classify")


def test_load_eight_clients_while_training(served):
    studio, url = served
    texts = ["Where is my parcel?", "My invoice is wrong", "The app crashes on start", "Refund please"]
    client = Client(url, verbose=False)
    expected = {
        (a, t): top(client.predict(a, t, api_name="/classify")) for a in ("router-a", "router-b") for t in texts
    }
    job = studio.jobs.submit(
        TrainConfig(data=str(SAMPLES_DIR / "support_routing.csv"), name="busy", epochs=20, max_length=48)
    )
    deadline = time.time() + 300
    while job.status != "training":
        assert time.time() < deadline and job.status not in ("failed",), job.error
        time.sleep(0.2)
    latencies, wrong, errors = [], [], []

    def user(i):
        c = Client(url, verbose=False)
        for k in range(25):
            adapter, text = ("router-a", "router-b")[(i + k) % 2], texts[k % len(texts)]
            t0 = time.perf_counter()
            try:
                got = top(c.predict(adapter, text, api_name="/classify"))
            except Exception as e:  # counted, reported below
                errors.append(repr(e))
                continue
            latencies.append(time.perf_counter() - t0)
            if got != expected[(adapter, text)]:
                wrong.append((adapter, text))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert job.status == "training", "the training job should still be running under load"
    studio.jobs.stop(job.id)
    studio.jobs.wait(job.id, 300)
    lat = sorted(latencies)
    print(
        f"\nload test: {len(lat)} requests, p50 {statistics.median(lat) * 1e3:.0f} ms, "
        f"p95 {lat[int(0.95 * len(lat)) - 1] * 1e3:.0f} ms, while training"
    )
    assert not errors and not wrong and len(lat) == 200
    assert job.status == "stopped"


def test_route_picks_a_department_and_its_adapter_answers(served):
    studio, url = served
    publish_fixed_router(studio, "to-orders", LABELS, "orders")
    publish_fixed_router(studio, "to-billing", LABELS, "billing")
    client = Client(url, verbose=False)
    message = "Where is my parcel? It was due on Monday."
    head, answer = client.predict("to-orders", message, api_name="/route")
    assert "chose **orders** (98.7% confident)" in head and "answered by **orders-style**" in head
    fresh = load_base("smollm2-135m-instruct")
    name = load_adapter(fresh.model, studio.library.get("orders-style").path)
    assert answer.strip() == generate(fresh.model, fresh.tokenizer, message, name, ANSWER_TOKENS).strip()
    # No department covers 'billing': the bare base answers instead, and the head says why.
    head, answer = client.predict("to-billing", message, api_name="/route")
    assert "no instruction adapter covers the label 'billing'" in head
    assert "fallback: the bare base model **smollm2-135m-instruct**" in head
    assert answer.strip() == generate(fresh.model, fresh.tokenizer, message, None, ANSWER_TOKENS).strip()
    # Judged out of scope: the fixed hand-off message, when one is given.
    entry = studio.library.get("to-orders")
    meta = json.loads((entry.path / "adapter_config.json").read_text())
    curve = {"false_rejection": [0.0, 0.05, 0.5], "threshold": [1.0, 0.5, 0.0]}  # msp: 1 - confidence
    meta["out_of_scope"] = {"score": "msp", "threshold": 0.5, "false_rejection": 0.05, "curve": curve}
    (entry.path / "adapter_config.json").write_text(json.dumps(meta))
    head, answer = client.predict("to-orders", message, 0.5, "Someone will call you.", api_name="/route")
    assert "it looks out of scope" in head and "fallback: a hand-off message" in head
    assert answer == "Someone will call you."


def test_route_many_and_compare_serve_the_adapters_of_one_base_in_one_batch(served, monkeypatch):
    studio, url = served
    publish_random(studio, "smollm2-135m-instruct", "billing-style", "instruction", seed=4, scale=0.03)
    publish_fixed_router(studio, "all-to-orders", LABELS, "orders")
    llm = studio.base("smollm2-135m-instruct").model
    calls = []
    real_generate = llm.generate
    monkeypatch.setattr(
        llm, "generate", lambda *a, **k: calls.append(k["input_ids"].shape[0]) or real_generate(*a, **k)
    )
    fresh = load_base("smollm2-135m-instruct")
    names = {n: load_adapter(fresh.model, studio.library.get(n).path) for n in ("orders-style", "billing-style")}

    messages = ["Where is my parcel?", "It was due on Monday and never came."]
    table = Client(url, verbose=False).predict("all-to-orders", "\n".join(messages), api_name="/route_many")
    rows = [dict(zip(table["headers"], r, strict=True)) for r in table["data"]]
    assert [r["answered by"] for r in rows] == ["orders-style", "orders-style"] and calls == [2]
    assert [(r["message"], r["department"]) for r in rows] == [(m, "orders") for m in messages]
    # Mixed batches equal rows run alone (tests/test_real_models.py); here one row checks the wiring.
    want = generate(fresh.model, fresh.tokenizer, messages[0], names["orders-style"], ANSWER_TOKENS)
    assert rows[0]["answer"].strip() == want.strip() and rows[1]["answer"].strip()

    calls.clear()
    text = "I was charged twice for my order."
    outs = compare_outputs(studio, None, ["router-a", "orders-style", "billing-style"], text, with_base=True)
    assert calls == [3]  # two adapters and the bare base: one generate call
    assert [o.splitlines()[0] for o in outs] == [
        "### router-a",
        "### orders-style",
        "### billing-style",
        "### base: smollm2-135m-instruct",
    ]
    assert f"**{studio.classify('router-a', [text])[0].label}**" in outs[0]
    for out, name in zip(outs[1:], [names["orders-style"], names["billing-style"], None], strict=True):
        assert (
            out.split("\n", 1)[1].strip() == generate(fresh.model, fresh.tokenizer, text, name, ANSWER_TOKENS).strip()
        )
