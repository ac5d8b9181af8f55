"""Instruction adapters, measured (adapter_core.engine.answer_scores): the scores against rouge-score and
sacrebleu themselves, loops and cut answers counted from the generator's rows, and the answers of every
compared model made in one mixed-adapter batch; on a tiny random Llama over SmolLM2's tokenizer."""

import pandas as pd
import pytest
import sacrebleu
import torch
from helpers import tiny_llama, tiny_llama_with_adapters
from rouge_score import rouge_scorer

from adapter_core import AdapterConfig, adapter_parameters, add_adapter, load_base
from adapter_core.engine import answer_scores as a
from adapter_core.generation import Row


@pytest.fixture(scope="module")
def tokenizer():
    return load_base("smollm2-135m-instruct").tokenizer


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama_with_adapters(tokenizer, scale=0.5)


def test_text_scores_are_rouge_score_s_and_sacrebleu_s():
    answers = ["The cat sat", "Refund  issued.", "привет мир", "nothing alike"]
    refs = ["the cat sat on the mat", "refund issued.", "привет мир", "completely different words"]
    got = a.text_scores(answers, refs)
    assert got["exact_match"] == pytest.approx(2 / 4)  # case and spacing set aside; the Cyrillic pair too
    # ROUGE-L: 3 of 6 reference words in order -> P 1, R 0.5, F 2/3; the default tokenizer agrees on ASCII.
    assert got["rouge_l"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    english = rouge_scorer.RougeScorer(["rougeL"]).score(refs[0], answers[0])["rougeL"].fmeasure
    assert english == pytest.approx(2 / 3)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(answers, [refs]).score)
    assert a.text_scores(refs, refs) == {"rouge_l": 1.0, "chrf": 100.0, "exact_match": 1.0}


def test_loops_and_cut_answers_are_counted_from_the_rows():
    rows = [Row([1], text="ok"), Row([1], text="ok ok ok"), Row([1], text="a long answ")]
    rows[0].finish_reason = "stop"
    rows[1].finish_reason, rows[1].repeated = "stop", True
    rows[2].finish_reason = "length"
    got = a.row_scores(rows, ["ok", "ok", "a long answer"])
    assert got["loop_rate"] == pytest.approx(1 / 3) and got["cut_rate"] == pytest.approx(1 / 3)


def test_every_compared_model_answers_in_one_mixed_batch_per_group_of_prompts(model, tokenizer, monkeypatch):
    batches = []
    real = a.generate_rows

    def spy(model, tokenizer, rows, stop_ids, guard=None):
        batches.append([(r.adapter, r.max_new_tokens, r.temperature) for r in rows])
        return real(model, tokenizer, rows, stop_ids, guard)

    monkeypatch.setattr(a, "generate_rows", spy)
    frame = pd.DataFrame(
        {
            "instruction": [f"Question {i}?" for i in range(5)],
            "response": [f"Answer {i}." for i in range(5)],
            "system": ["Be brief."] * 2 + [""] * 3,
        }
    )
    settings = a.ScoreSettings(max_new_tokens=6, max_pairs=4, prompts_per_batch=3)
    result = a.score_pairs(model, tokenizer, frame, ["a", "b", None], settings)
    # 4 pairs of 5 in groups of 3: two batches, each with every model's rows, greedy.
    assert [{n for n, _, _ in b} for b in batches] == [{"a", "b", None}] * 2
    assert [len(b) for b in batches] == [9, 3] and all(t == 0.0 and n == 6 for b in batches for _, n, t in b)
    assert [s["adapter"] for s in result["scores"]] == ["a", "b", a.BASE]
    assert [s["model"] for s in result["scores"]] == ["adapter", "adapter", "base"]
    assert result["settings"]["decoding"] == "greedy" and result["settings"]["pairs"] == 4
    assert result["settings"]["of_pairs"] == 5 and result["settings"]["max_new_tokens"] == 6
    assert all(len(v) == 4 for v in result["answers"].values())
    assert result["answers"]["a"] != result["answers"][a.BASE]  # the adapter changes the answers
    for s in result["scores"]:
        assert set(a.SCORE_KEYS) <= set(s) and 0 <= s["rouge_l"] <= 1 and 0 <= s["chrf"] <= 100
        assert s["cut_rate"] + s["loop_rate"] <= 1
    # A random tiny model rarely ends an answer in 6 tokens: the cut answers are counted.
    assert max(s["cut_rate"] for s in result["scores"]) > 0
    text = a.scores_text(result)
    assert "4 pairs (the first of 5), greedy decoding, at most 6 new tokens" in text and "(base model): ROUGE-L" in text


RESULT = {
    "settings": {"decoding": "greedy", "max_new_tokens": 64, "pairs": 2, "of_pairs": 9},
    "scores": [
        {"adapter": "orders|x", "model": "adapter", "rouge_l": 0.61234, "chrf": 55.5, "exact_match": 0.5,
         "loop_rate": 0.0, "cut_rate": 0.25},
        {"adapter": a.BASE, "model": "base", "rouge_l": 0.1, "chrf": 20.0, "exact_match": 0.0, "loop_rate": 0.5,
         "cut_rate": 0.0},
    ],
}  # fmt: skip


def test_the_model_card_and_past_runs_show_the_scores_beside_the_base(tmp_path):
    import json
    import types

    from adapter_core.card import model_card
    from studio import report_view as rv

    meta = {"task": "instruction", "name": "orders", "config": {}, "base": {"name_or_path": "smollm2-135m-instruct",
            "model_type": "llama", "hidden_size": 576, "num_layers": 30}, "answer_scores": RESULT}  # fmt: skip
    card = model_card(meta)
    assert "## Answer scores" in card and "2 held-out pairs, greedy decoding, at most 64 new tokens" in card
    assert "| orders\\|x | 0.612 | 55.5 | 50% | 0% | 25% |" in card  # a name's pipe escaped, not a column
    assert "| (base model) | 0.100 | 20.0 | 0% | 50% | 0% |" in card
    assert "## Answer scores" not in model_card({**meta, "answer_scores": None})
    run = types.SimpleNamespace(dir=tmp_path)
    assert rv.run_answer_scores(run) is None
    (tmp_path / a.ANSWER_SCORES_FILE).write_text(json.dumps({**RESULT, "answers": {"orders|x": ["hi", "ho"]}}))
    assert rv.run_answer_scores(run) == RESULT  # the saved answers stay in the file
    text = rv.answer_scores_text(rv.run_answer_scores(run))
    assert text.startswith("**Answer scores on validation pairs") and "| (base model) | 0.100 |" in text
    done = {"info": {"answer_scores": {**RESULT, "scores": RESULT["scores"][:1]}}}
    assert len(rv.run_answer_scores(run, done)["scores"]) == 1  # the done event's, when there is one
    from studio.tabs.train import run_outputs  # the Train tab once an instruction run has ended

    info = {"task": "instruction", "samples": [], "done": True, "report": None, "answer_scores": RESULT}
    shown = run_outputs(info)[-1]
    assert shown["visible"] and "| orders\\|x | 0.612 |" in shown["value"]
    assert not run_outputs({**info, "done": False, "answer_scores": None})[-1]["visible"]


@pytest.mark.slow  # SmolLM2 in a studio: two adapters published, evaluated and scored
def test_compare_scores_each_instruction_adapter_beside_the_base_in_one_batch(tmp_path, monkeypatch):
    from studio_fixtures import publish_random

    from studio import comparison as c
    from studio.policy import Policy
    from studio.service import Studio

    studio = Studio(tmp_path / "home", Policy(max_new_tokens=6, max_scored_pairs=3))
    for seed, name in enumerate(("terse", "chatty")):
        publish_random(studio, "smollm2-135m-instruct", name, "instruction", seed=seed, scale=0.05)
    pairs = pd.DataFrame({"instruction": [f"Where is order {i}?" for i in range(5)], "response": ["On its way."] * 5})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    batches = []
    real = a.generate_rows
    monkeypatch.setattr(
        a,
        "generate_rows",
        lambda m, t, rows, *args: batches.append([r.adapter for r in rows]) or real(m, t, rows, *args),
    )
    result = c.compare_evaluation(studio, None, ["terse", "chatty"], str(tmp_path / "pairs.csv"))
    table = result["scores"].set_index("adapter")
    assert list(table.index) == ["terse", "chatty", "base: smollm2-135m-instruct"]
    assert table.loc["terse", "perplexity"] > 1 and pd.isna(table.loc["base: smollm2-135m-instruct", "perplexity"])
    for column in ("ROUGE-L", "chrF", "exact match", "loops", "cut at limit"):
        assert table[column].notna().all()
    assert len(batches) == 1 and len(batches[0]) == 9 and None in batches[0]  # 3 pairs x (2 adapters + base)
    assert "3 pairs (the first of 5), greedy decoding, at most 6 new tokens" in result["answer_note"]


@pytest.fixture(scope="module")
def tiny_bases(tokenizer, tmp_path_factory):
    """Two tiny Llamas saved as local bases (a folder each, with SmolLM2's tokenizer): a studio serves and
    trains them as it does a catalog model, in a fraction of a second."""
    folders = []
    for i, hidden in enumerate((32, 16)):
        folder = tmp_path_factory.mktemp(f"tiny-base-{i}")
        tiny_llama(tokenizer, hidden=hidden, layers=2).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    return folders


def test_compare_answers_in_one_batch_per_base_beside_each_bare_base(tiny_bases, tmp_path, monkeypatch):
    """Compare's answer scores (`with_answer_scores` over `Studio.score_answers`): adapters of two bases,
    each base's adapters and the base itself in one mixed batch, and a row for each bare base."""
    from studio_fixtures import publish_random

    from studio import comparison as c
    from studio.policy import Policy
    from studio.service import Studio

    studio = Studio(tmp_path / "home", Policy(max_new_tokens=6, max_scored_pairs=3))
    for seed, (name, base) in enumerate([("terse", 0), ("chatty", 0), ("other", 1)]):
        publish_random(studio, tiny_bases[base], name, "instruction", seed=seed, scale=0.5, bottleneck=8)
    pairs = pd.DataFrame({"instruction": [f"Where is order {i}?" for i in range(5)], "response": ["On its way."] * 5})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    batches = []
    real = a.generate_rows
    monkeypatch.setattr(
        a,
        "generate_rows",
        lambda m, t, rows, *args: batches.append([r.adapter for r in rows]) or real(m, t, rows, *args),
    )
    rows = [{"adapter": n, "perplexity": 9.0} for n in ("terse", "chatty", "other")]
    out, note = c.with_answer_scores(studio, None, ["terse", "chatty", "other"], str(tmp_path / "pairs.csv"), rows)
    # One batch per base: 3 pairs x (its adapters + the bare base); the names are the library's slots.
    assert sorted(len(b) for b in batches) == [6, 9] and all(b.count(None) == 3 for b in batches)
    bare = [f"base: {tiny_bases[0]}", f"base: {tiny_bases[1]}"]
    assert [r["adapter"] for r in out] == ["terse", "chatty", "other", *bare]
    for r in out:
        assert {"ROUGE-L", "chrF", "exact match", "loops", "cut at limit"} <= set(r)
    assert out[0]["perplexity"] == 9.0 and "perplexity" not in out[3]  # the evaluation's rows kept as they were
    assert out[0]["ROUGE-L"] != out[3]["ROUGE-L"] or out[0]["chrF"] != out[3]["chrF"]  # the adapter answers
    assert "3 pairs (the first of 5), greedy decoding, at most 6 new tokens" in note


def test_past_runs_show_an_instruction_runs_answer_scores_after_a_restart(tiny_bases, tmp_path, monkeypatch):
    """A studio run on a tiny local Llama ends with its answer scores; Past runs, in a studio started again
    on the same folder, shows the same scores beside the base, as the Train tab did at the run's end."""
    from helpers import SAMPLES

    from adapter_core.engine.train import TrainConfig
    from studio import report_view as rv
    from studio import train_view as h
    from studio.service import Studio

    pd.read_csv(SAMPLES / "orders_sft.csv").head(24).to_csv(tmp_path / "orders.csv", index=False)
    monkeypatch.setattr("adapter_core.engine.train.END_OF_RUN_TOKENS", 8)  # a random model rarely stops
    studio = Studio(tmp_path / "home")
    config = TrainConfig(
        base=tiny_bases[0], data=str(tmp_path / "orders.csv"), task="instruction", name="orders", max_steps=2,
        batch_size=4, max_length=64, val_fraction=0.25, score_pairs=3, sample_prompts=0,
    )  # fmt: skip
    job, _ = studio.submit(config)
    studio.jobs.wait(job.id, 120)
    assert job.status == "completed", job.error
    live = h.progress(studio, None, job.id)["answer_scores"]
    studio.jobs.close()
    shown = h.show_past_run(Studio(tmp_path / "home"), None, job.id)
    assert shown["answer_scores"] == live and [s["adapter"] for s in live["scores"]] == ["orders", a.BASE]
    assert live["settings"]["pairs"] == 3 and live["settings"]["max_new_tokens"] == 8
    text = rv.answer_scores_text(shown["answer_scores"])  # what the Past runs box shows
    assert "| orders |" in text and "| (base model) |" in text


def test_an_instruction_run_ends_with_its_scores_in_the_report_the_card_and_evaluate(
    tokenizer, tmp_path, capsys, monkeypatch
):
    """A tiny Llama saved as a local base: the run's end, its saved adapter's card, and `evaluate --json`."""
    import json

    from helpers import SAMPLES

    from adapter_core.cli import main
    from adapter_core.engine.train import TrainConfig, train

    base = tmp_path / "tiny-base"
    tiny_llama(tokenizer, hidden=32, layers=2).save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = pd.read_csv(SAMPLES / "orders_sft.csv").head(24)
    data.to_csv(tmp_path / "orders.csv", index=False)
    config = TrainConfig(
        base=str(base), data=str(tmp_path / "orders.csv"), task="instruction", name="orders", max_steps=2,
        batch_size=4, max_length=64, val_fraction=0.25, score_pairs=3, sample_prompts=0,
    )  # fmt: skip
    monkeypatch.setattr("adapter_core.engine.train.END_OF_RUN_TOKENS", 8)  # a random model rarely stops
    events = []
    result = train(config, tmp_path / "run", on_event=events.append)
    scores = result.answer_scores
    assert [s["adapter"] for s in scores["scores"]] == ["orders", a.BASE]
    assert scores["settings"]["pairs"] == 3 and scores["settings"]["of_pairs"] == 6
    assert scores["settings"]["max_new_tokens"] == 8 and scores["settings"]["decoding"] == "greedy"
    saved = json.loads((tmp_path / "run" / a.ANSWER_SCORES_FILE).read_text())
    assert saved["scores"] == scores["scores"] and len(saved["answers"]["orders"]) == 3
    assert next(e for e in events if e.kind == "done").info["answer_scores"] == scores
    meta = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert meta["answer_scores"] == scores and "answers" not in meta["answer_scores"]
    assert "## Answer scores" in (tmp_path / "run" / "adapter" / "README.md").read_text()
    args = ["evaluate", "--adapter", str(tmp_path / "run"), "--data", str(tmp_path / "orders.csv"), "--json"]
    assert main([*args, "--score-pairs", "2", "--max-new-tokens", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 24 and out["perplexity"] > 1
    got = out["answer_scores"]
    assert [s["adapter"] for s in got["scores"]] == ["orders", a.BASE] and "answers" not in got
    assert got["settings"]["pairs"] == 2 and got["settings"]["max_new_tokens"] == 4
    assert main(args[:-1] + ["--score-pairs", "1", "--max-new-tokens", "3"]) == 0
    assert "Answer scores on 1 pairs (the first of 24), greedy decoding" in capsys.readouterr().out


def test_a_stopped_instruction_run_ends_after_its_step_without_answering(tokenizer, tmp_path, monkeypatch):
    """Stop ends a run soon after its current step: the evaluation at the stop is the validation pass
    alone, and the end-of-run scores wait for the run's real end (they take minutes on a CPU)."""
    from helpers import SAMPLES

    from adapter_core.engine import loop
    from adapter_core.engine.train import TrainConfig, train

    base = tmp_path / "tiny-base"
    tiny_llama(tokenizer, hidden=32, layers=2).save_pretrained(base)
    tokenizer.save_pretrained(base)
    pd.read_csv(SAMPLES / "orders_sft.csv").head(24).to_csv(tmp_path / "orders.csv", index=False)
    config = TrainConfig(
        base=str(base), data=str(tmp_path / "orders.csv"), task="instruction", name="orders", max_steps=6,
        batch_size=4, max_length=64, val_fraction=0.25, score_pairs=3, sample_prompts=2, eval_every=2,
    )  # fmt: skip
    answered = []
    real = loop.answer_samples
    monkeypatch.setattr(loop, "answer_samples", lambda *a: answered.append(1) or real(*a))
    steps = []
    result = train(config, tmp_path / "run", on_event=lambda e: steps.append(e.step) if e.kind == "step" else None,
                   should_stop=lambda: len(steps) >= 3)  # fmt: skip
    assert result.status == "stopped" and result.steps == 3 and steps == [1, 2, 3]
    assert len(answered) == 1  # at step 2's evaluation; none at the stop (step 3)
    assert result.answer_scores is None and not (tmp_path / "run" / a.ANSWER_SCORES_FILE).exists()
    assert result.metrics and "val_loss" in result.metrics  # the stop's validation pass still ran


@pytest.mark.slow  # the real SmolLM2: its chat template, end-of-turn token and padding in a mixed batch
def test_smollm2_scores_its_own_answers_perfectly_beside_an_adapter(tmp_path):
    from adapter_core import generate

    base = load_base("smollm2-135m-instruct")
    add_adapter(base.model, "noisy", AdapterConfig(bottleneck=16), task="instruction")
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in adapter_parameters(base.model, "noisy").values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    prompts = ["Where is my parcel?", "Say hello in French.", "What is two plus two?"]
    own = [generate(base.model, base.tokenizer, p, None, 16, guard=False) for p in prompts]  # alone, one by one
    pd.DataFrame({"instruction": prompts, "response": own}).to_csv(tmp_path / "own.csv", index=False)
    result = a.score_file(base, ["noisy", None], tmp_path / "own.csv", a.ScoreSettings(max_new_tokens=16))
    scores = {s["adapter"]: s for s in result["scores"]}
    assert result["answers"][a.BASE] == own  # padded beside the adapter's rows, the base answers as alone
    assert scores[a.BASE]["rouge_l"] == 1.0 and scores[a.BASE]["chrf"] == 100.0
    assert scores[a.BASE]["exact_match"] == 1.0
    assert scores["noisy"]["rouge_l"] < 1.0 and scores["noisy"]["exact_match"] < 1.0
