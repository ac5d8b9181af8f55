"""Many requests in one `generate` (adapter_core.generation) and the batcher that forms the batches, on a
tiny random Llama over SmolLM2's tokenizer."""

import threading
import types

import pytest
import torch
from helpers import tiny_llama_with_adapters, wait_for

from adapter_core import AdapterError, load_base
from adapter_core.generation import Row, RowSampling, _partial_stop, generate_rows
from adapter_core.inference import format_prompt, prompt_ids
from adapter_core.serve.batcher import Batcher
from adapter_core.serve.errors import Busy


@pytest.fixture(scope="module")
def tokenizer():
    return load_base("smollm2-135m-instruct").tokenizer


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama_with_adapters(tokenizer, scale=0.1)


def row(tokenizer, text, adapter=None, tokens=12, **kw):
    return Row(prompt_ids(tokenizer, format_prompt(tokenizer, text)), adapter, tokens, **kw)


def run(model, tokenizer, rows):
    generate_rows(model, tokenizer, rows, stop_ids=[tokenizer.eos_token_id])
    return rows


def test_rows_in_one_batch_equal_each_row_alone(model, tokenizer):
    def make():
        return [
            row(tokenizer, "Where is my parcel?", "a"),
            row(tokenizer, "I was charged twice for one order, why?", "b"),
            row(tokenizer, "Hello", None, temperature=1.0, top_p=0.9),  # a sampled row beside greedy ones
            row(tokenizer, "Short budget", "a", tokens=5),
        ]

    together = run(model, tokenizer, make())
    alone = [run(model, tokenizer, [r])[0] for i, r in enumerate(make()) if i != 2]
    for t, a in zip([together[i] for i in (0, 1, 3)], alone, strict=True):
        assert t.tokens == a.tokens and t.text == a.text
    assert together[0].tokens != together[1].tokens  # two adapters, two answers
    assert len(together[3].tokens) == 5 and together[3].finish_reason == "length"
    assert all(len(r.tokens) <= r.max_new_tokens for r in together)


def test_stop_strings_cut_the_text_and_are_never_sent(model, tokenizer):
    [full] = run(model, tokenizer, [row(tokenizer, "Where is my parcel?", None, tokens=20)])
    at = len(tokenizer.decode(full.tokens[:8], skip_special_tokens=True))
    stop = full.text[at : at + 4]  # a stop string that first appears some tokens in
    assert full.text.index(stop) >= len(tokenizer.decode(full.tokens[:2], skip_special_tokens=True))
    pieces = []
    [cut] = run(
        model, tokenizer, [row(tokenizer, "Where is my parcel?", None, tokens=20, stop=[stop], on_text=pieces.append)]
    )
    assert cut.text == full.text[: full.text.index(stop)] and cut.finish_reason == "stop"
    assert "".join(pieces) == cut.text and len(pieces) > 1
    assert _partial_stop("hello wor", "world") == 3 and _partial_stop("hello", "world") == 0


def test_a_cancelled_row_stops_and_one_cancelled_before_it_starts_costs_nothing(model, tokenizer):
    forwards = []
    hook = model.register_forward_hook(lambda m, i, o: forwards.append(1))
    try:
        pieces = []
        r = row(tokenizer, "Where is my parcel?", "a", tokens=40)
        r.on_text = lambda p: (pieces.append(p), len(pieces) >= 3 and r.cancel.set())
        run(model, tokenizer, [r])
        assert r.finish_reason == "cancelled" and len(r.tokens) <= 4 and len(forwards) <= 4
        forwards.clear()
        early = row(tokenizer, "Hello", "b")
        early.cancel.set()
        run(model, tokenizer, [early])
        assert early.finish_reason == "cancelled" and forwards == []
    finally:
        hook.remove()


def test_each_row_samples_with_its_own_settings():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]] * 3)
    greedy, narrow, wide = Row([1], temperature=0), Row([1], temperature=1.0, top_p=0.5), Row([1], temperature=2.0)
    out = RowSampling([greedy, narrow, wide])(None, scores.clone())
    assert out[0].tolist() == [0.0, float("-inf"), float("-inf"), float("-inf")]  # only the best token
    assert out[1, 0] == 3.0 and torch.isinf(out[1, 1:]).all()  # the top token alone holds half the mass
    assert out[2].tolist() == [1.5, 1.0, 0.5, 0.0]  # scaled, nothing cut


def test_the_batcher_puts_requests_that_arrive_together_in_one_batch(model, tokenizer):
    base = types.SimpleNamespace(model=model, tokenizer=tokenizer, name="tiny")
    batcher = Batcher(base, max_batch=8, window_s=0.2, max_waiting=4)
    done = threading.Semaphore(0)
    errors = []
    rows = [row(tokenizer, f"Question {i}", "ab"[i % 2], tokens=6) for i in range(3)]
    for r in rows:
        batcher.submit(r, lambda e: (errors.append(e), done.release()))
    for _ in rows:
        assert done.acquire(timeout=60)
    assert errors == [None] * 3 and (batcher.batches, batcher.rows) == (1, 3)
    assert [r.tokens for r in rows] == [
        run(model, tokenizer, [row(tokenizer, f"Question {i}", "ab"[i % 2], tokens=6)])[0].tokens for i in range(3)
    ]

    with pytest.raises(Busy, match="busy"):
        batcher.submit_many([(row(tokenizer, "x"), lambda e: None) for _ in range(5)])

    failed = []
    batcher.submit(row(tokenizer, "x", adapter="no-such-adapter"), lambda e: (failed.append(e), done.release()))
    assert done.acquire(timeout=60) and isinstance(failed[0], AdapterError)
    again = row(tokenizer, "Still working?", "a", tokens=3)
    batcher.submit(again, lambda e: done.release())  # the worker survived the failed batch
    assert done.acquire(timeout=60) and again.finish_reason == "length"
    batcher.close()
    # Closed with an empty queue, its worker ends.
    wait_for(
        lambda: not any(t.name == "batcher-tiny" and t.is_alive() for t in threading.enumerate()),
        10,
        what="the worker to end",
    )


def test_a_row_whose_reader_fails_ends_alone(model, tokenizer):
    def broken(piece):
        raise RuntimeError("the client's event loop is closed")

    bad = row(tokenizer, "Where is my parcel?", "a", tokens=10, on_text=broken)
    good = row(tokenizer, "Where is my parcel?", "b", tokens=10)
    run(model, tokenizer, [bad, good])
    assert bad.finish_reason == "cancelled" and len(bad.tokens) <= 2
    assert good.finish_reason == "length" and len(good.tokens) == 10
