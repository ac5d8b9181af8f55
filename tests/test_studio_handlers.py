"""The studio's handlers as plain functions: data messages, the parameter counter, compare tables, library."""

import json
import zipfile

import pytest
from helpers import tiny_model
from studio_fixtures import publish_fixed_router, publish_random

from adapter_core import AdapterConfig, AdapterError, add_adapter, save_adapter
from studio import comparison as c
from studio import data_view as dv
from studio import summary_view as sv
from studio import train_view as h
from studio import use_view as u
from studio.library import safe_name
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.text import duration


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(tmp_path_factory.mktemp("studio"))


def test_data_tab_reads_a_sample_and_fills_the_mapping():
    info = dv.inspect_data(str(SAMPLES_DIR / "support_routing.csv"), "classification")
    assert info["mapping"] == {"text": "text", "label": "label"}
    assert info["labels"] == ["billing", "orders", "tech"]
    assert "480 of 480 rows used" in info["summary"] and len(info["preview"]) == 20
    assert "Tokens per example" not in info["summary"]  # no tokenizer given


def test_data_tab_messages_for_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,score\nhello,1\n")
    info = dv.inspect_data(str(bad), "classification")  # readable: kept, so the visitor can pick the column
    assert not info["ready"] and info["columns"] == ["text", "score"]
    assert info["mapping"] == {"text": "text"}  # the text column found is picked; only the label is left
    assert "bad.csv has no label column. Columns found: text, score" in info["summary"]
    with pytest.raises(AdapterError, match="Upload a CSV, TSV or JSONL file, or pick a sample"):
        dv.inspect_data(None, "classification")


def test_explicit_mapping_from_the_dropdowns(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("body,dept\n" + "".join(f"msg {i},{i % 2}\n" for i in range(10)))
    info = dv.inspect_data(str(f), "classification", {"text": "body", "label": "dept"})
    assert info["mapping"] == {"text": "body", "label": "dept"} and info["labels"] == ["0", "1"]


def test_parameter_counter_matches_the_closed_form(studio):
    text = h.estimate(studio, "minilm", 64, "houlsby", 3)
    assert "**596,355** trainable parameters" in text  # 2 x 6 x (2*384*64 + 64 + 384) + 384*3 + 3
    assert "2.63%" in text and "MB" in text
    assert "**298,755**" in h.estimate(studio, "minilm", 64, "pfeiffer", 3)  # 6 x 49,600 + 1,155


def test_model_description_and_unknown_model(studio, monkeypatch):
    text = h.describe_model(studio, "minilm")
    assert "BertModel" in text and "22.7M parameters" in text and "classification" in text
    assert "more at the top of the page" in text and "A GPU is much faster" not in text  # the notice once, above
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdapterError, match="Could not load base model 'no-org/no-model'"):
        h.describe_model(studio, "no-org/no-model")


def test_compare_and_library_tables(studio, tmp_path):
    publish_random(studio, "minilm", "alpha", "classification", ["billing", "orders", "tech"], seed=1)
    publish_random(studio, "minilm", "beta", "classification", ["billing", "orders", "tech"], seed=2, bottleneck=32)
    table = c.compare_table(studio, None, ["alpha", "beta"])
    assert table["bottleneck"].tolist() == [16, 32]
    counts = [int(n.replace(",", "")) for n in table["trainable params"]]
    assert counts[1] > counts[0]
    # One count everywhere: Compare reads the weights, the Adapter tab computes it before training.
    assert f"**{counts[0]:,}** trainable" in h.estimate(studio, "minilm", 16, "houlsby", 3)
    assert counts[0] == 153_411  # 12 x (2*384*16 + 16 + 384) + 3 x 385
    assert "accuracy" not in table.columns or all("." in v for v in table["accuracy"])
    lib = c.library_table(studio)
    assert {"alpha", "beta"} <= set(lib["adapter"]) and "owner" not in lib.columns  # one user: no owner column
    entry = studio.library.get("alpha")
    meta = json.loads((entry.path / "adapter_config.json").read_text())
    meta.setdefault("training", {})["metrics"] = {"accuracy": 0.9}
    (entry.path / "adapter_config.json").write_text(json.dumps(meta))
    columns = list(c.library_table(studio).columns)
    assert "accuracy" in columns and not any(col.startswith("perplexity") for col in columns)  # routers only
    estimate = h.estimate(studio, "minilm", 64, "houlsby", 3)
    outs = c.compare_outputs(studio, None, ["alpha", "beta"], "I was charged twice", False)
    assert h.estimate(studio, "minilm", 64, "houlsby", 3) == estimate  # served adapters don't move the base's count
    assert len(outs) == 2 and outs[0].startswith("### alpha")
    scores = c.compare_evaluate(studio, None, ["alpha", "beta"], str(SAMPLES_DIR / "support_routing.csv"))
    assert scores["adapter"].tolist() == ["alpha", "beta"] and scores["rows"].tolist() == [480, 480]
    assert list(scores.columns) == [
        "adapter",
        "accuracy",
        "F1 averaged over labels",
        "rows",
    ]  # test figures only, plain names
    assert all(0 <= a <= 1 for a in scores["accuracy"])
    with pytest.raises(AdapterError, match="Select 2 to 4 adapters"):
        c.check_compare_selection(["alpha"])
    with pytest.raises(AdapterError, match="beside instruction adapters of one base"):
        c.compare_outputs(studio, None, ["alpha", "beta"], "hello", True)


def test_compare_scores_each_router_on_the_test_files_out_of_scope_rows(studio, tmp_path):
    """With the label of its out-of-scope rows, Compare's Test scores say how each router's saved decision
    sets those rows apart, the engine's own figures under plain names; the rest are scored as before."""
    from adapter_core.engine import evaluate_file

    labels = ["billing", "orders", "tech"]
    for name, seed in (("oos-a", 5), ("oos-b", 6)):
        publish_random(studio, "minilm", name, "classification", labels, seed=seed)
        folder = studio.library.get(name).path
        meta = json.loads((folder / "adapter_config.json").read_text())
        meta["out_of_scope"] = {"score": "msp", "threshold": 0.5, "false_rejection": 0.05}  # msp: 1 - confidence
        (folder / "adapter_config.json").write_text(json.dumps(meta))
    path = tmp_path / "with_oos.csv"
    routing = (SAMPLES_DIR / "support_routing.csv").read_text().splitlines()
    oos = [f"Can you recommend a pasta recipe for {n} people?,oos" for n in range(2, 12)]
    path.write_text("\n".join(routing[:31] + oos) + "\n")
    scores = c.compare_evaluate(studio, None, ["oos-a", "oos-b"], str(path), " oos ")
    assert list(scores.columns) == [
        "adapter",
        "accuracy",
        "F1 averaged over labels",
        "rows",
        "out-of-scope AUROC",
        "out of scope let through at 95% in scope kept",
        "out of scope caught at its threshold",
        "in scope rejected at its threshold",
        "out-of-scope rows",
    ]
    assert scores["rows"].tolist() == [30, 30] and scores["out-of-scope rows"].tolist() == [10, 10]
    base, entry = studio.served("oos-b")
    want = evaluate_file(base, entry.slot, path, oos_label="oos")["out_of_scope"]
    assert scores.iloc[1]["out-of-scope AUROC"] == round(want["auroc"], 4)
    assert scores.iloc[1]["out of scope caught at its threshold"] == round(want["oos_recall"], 4)
    assert scores.iloc[1]["in scope rejected at its threshold"] == round(want["in_scope_false_rejection"], 4)
    # Without the label, those rows are an unknown label; an adapter with no saved decision says so.
    with pytest.raises(AdapterError, match=r"labels this adapter was not trained on: \['oos'\]"):
        c.compare_evaluate(studio, None, ["oos-a", "oos-b"], str(path))
    publish_random(studio, "minilm", "no-decision", "classification", labels, seed=7)
    with pytest.raises(AdapterError, match="'no-decision' has no out-of-scope decision to evaluate"):
        c.compare_evaluate(studio, None, ["oos-a", "no-decision"], str(path), "oos")


def test_out_of_scope_examples_go_from_the_data_tab_to_the_routers_run(tmp_path):
    """The Data tab's second upload: checked when attached, named in the summary, handed to the run, which
    picks its out-of-scope score on them and saves what share of them the router catches."""
    from studio.policy import Policy
    from studio.settings import train_config

    studio = Studio(tmp_path / "home", policy=Policy.local())
    oos = tmp_path / "elsewhere.csv"
    oos.write_text("text\n" + "".join(f"What is a good pasta recipe for {n} people?\n" for n in range(2, 14)))
    with pytest.raises(AdapterError, match="Load the training data first"):
        dv.with_oos_examples(studio, None, str(oos), None)
    source = {**dv.sample_source("Support routing (classification, 480 rows)"), "ready": True, "rows": 480}
    source, said = dv.with_oos_examples(studio, source, str(oos), None)
    assert "elsewhere.csv**: 12 out-of-scope messages" in said and source["oos_name"] == "elsewhere.csv"
    assert "Out-of-scope examples: elsewhere.csv picks" in sv.run_summary(studio, "minilm", source, {"auto": True})
    two = tmp_path / "two.csv"
    two.write_text("a,b\nx,y\n")
    with pytest.raises(AdapterError, match="two.csv has no text column"):
        dv.with_oos_examples(studio, source, str(two), None)
    assert "oos_path" not in dv.with_oos_examples(studio, source, None, None)[0]  # cleared
    config = train_config("minilm", source, "classification", {}, "router", {"auto": True})
    config.max_steps, config.max_length = 12, 32
    job, _ = studio.submit(config)
    assert studio.jobs.wait(job.id, 300).status == "completed", job.error
    meta = json.loads((studio.library.get("router").path / "adapter_config.json").read_text())
    assert meta["train_config"]["oos_data"] is not None and 0 <= meta["out_of_scope"]["oos_recall"] <= 1
    studio.jobs.close()
    public = Studio(tmp_path / "public", policy=Policy(public=True))
    with pytest.raises(AdapterError, match="Files come only from your uploads"):
        dv.with_oos_examples(public, source, str(oos), "anon:x")


def test_library_rename_delete_zip_and_upload(studio, tmp_path):
    publish_random(studio, "minilm", "gamma", "classification", ["a", "b"], seed=3)
    studio.library.rename("gamma", "gamma renamed")
    assert "gamma renamed" in studio.library.names() and "gamma" not in studio.library.names()
    archive = studio.library.zip("gamma renamed", tmp_path)
    studio.library.delete("gamma renamed")
    assert "gamma renamed" not in studio.library.names()
    entry = studio.library.upload([archive])
    assert entry.name == "gamma renamed" and entry.meta["labels"] == ["a", "b"]
    assert studio.classify("gamma renamed", ["hello"])[0].label in {"a", "b"}


def test_upload_rejects_other_files_and_path_traversal(studio, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../adapter_config.json", "{}")
        z.writestr("payload.py", "print('hi')")
    with pytest.raises(AdapterError, match="is not an adapter"):
        studio.library.upload([evil])
    script = tmp_path / "x.py"
    script.write_text("")
    with pytest.raises(AdapterError, match="Only adapter_config.json, adapter_model.safetensors or a .zip"):
        studio.library.upload([script])
    assert safe_name("../../etc/passwd") == "etc-passwd"
    assert not (tmp_path.parent / "adapter_config.json").exists()


def test_progress_without_a_run(studio):
    info = h.progress(studio, None, None)
    assert info["done"] and "No run yet" in info["status"]


def test_data_summary_gives_token_lengths_with_the_base_tokenizer(studio):
    info = dv.inspect_data(
        str(SAMPLES_DIR / "support_routing.csv"),
        "classification",
        tokenizer=studio.base("minilm").tokenizer,
        max_length=16,
    )
    assert "Tokens per example: median" in info["summary"]
    assert "longer than max length 16 will be truncated" in info["summary"]


def test_past_runs_are_listed_with_their_curves(tmp_path):
    from adapter_core.engine.train import TrainConfig

    first = Studio(tmp_path)
    job = first.jobs.submit(
        TrainConfig(data=str(SAMPLES_DIR / "support_routing.csv"), name="old", max_steps=3, max_length=48)
    )
    first.jobs.wait(job.id, 300)
    restarted = Studio(tmp_path)  # a new process would see the same folders
    assert h.past_runs(restarted) == [job.id]
    shown = h.show_past_run(restarted, None, job.id)
    assert "completed" in shown["text"] and "in the library as 'old'" in shown["text"]
    assert list(shown["figure"].data[0].x) == [1, 2, 3]
    assert shown["report"]["labels"] == ["billing", "orders", "tech"] and not shown["resumable"]
    assert "old" in restarted.library.names()


def test_route_table_messages_for_bad_input(studio):
    with pytest.raises(AdapterError, match="Pick a router"):
        u.route_table(studio, None, None, "hello")
    with pytest.raises(AdapterError, match="one per line"):
        u.route_table(studio, None, "router", " \n  \n")
    with pytest.raises(AdapterError, match="at most 256 messages"):
        u.route_table(studio, None, "router", "\n".join(f"message {i}" for i in range(300)))


def test_route_shows_its_decision_and_the_label_map_before_any_department_exists(tmp_path):
    studio = Studio(tmp_path)
    publish_fixed_router(studio, "support", ["orders", "billing"], "orders")
    head, route = u.route_head(studio, None, "support", "Where is my parcel?")
    assert route.fallback and route.label == "orders"
    assert "chose **orders** (99.3% confident" in head and "no instruction adapter covers the label 'orders'" in head
    assert "no department adapter exists yet, so nothing answers" in head  # how to make one: the label table
    line, table = u.department_map(studio, None, "support")
    assert "No department adapter exists yet" in line and "**orders-help**" in line  # how to make one
    assert table.values.tolist() == [["orders", "fallback: no answer yet"], ["billing", "fallback: no answer yet"]]
    rows = u.route_table(studio, None, "support", "Where is my parcel?\nIt never came.")
    assert rows["department"].tolist() == ["orders", "orders"] and rows["answer"].tolist() == ["", ""]
    assert set(rows["answered by"]) == {"fallback: none yet (no department adapter)"}
    handed = u.route_table(studio, None, "support", "Where is my parcel?", handoff="We will call you.")
    assert handed["answer"].tolist() == ["We will call you."]
    assert list(u.route_table(studio, None, "support", "hi").columns) == u.ROUTED_COLUMNS
    assert u.department_map(studio, None, None)[1].columns.tolist() == ["label", "department adapter"]
    with pytest.raises(AdapterError, match="No adapter"):
        u.department_map(studio, None, "not-a-router")
    assert u.department_map(studio, None, "not-a-router", missing_ok=True)[0] == ""  # deleted since it was picked


def test_the_label_map_names_each_department_and_the_fallback(tmp_path):
    studio = Studio(tmp_path)
    publish_fixed_router(studio, "support", ["orders", "billing"], "orders")
    # Which labels have a department reads only the library: a tiny decoder stands in for SmolLM2's weights.
    model = tiny_model("llama")
    add_adapter(model, "orders-style", AdapterConfig(bottleneck=4), task="instruction")
    save_adapter(model, "orders-style", tmp_path / "orders-style", extra={"base_model": "smollm2-135m-instruct"})
    studio.library.publish(tmp_path / "orders-style", "orders-style")
    line, table = u.department_map(studio, None, "support")
    assert table.values.tolist() == [
        ["orders", "orders-style"], ["billing", "fallback: the bare base model smollm2-135m-instruct"]
    ]  # fmt: skip
    assert "1 of 2 labels have no department adapter" in line and "**smollm2-135m-instruct**" in line


def test_the_route_slider_moves_the_false_rejection_rate(studio):
    entry = publish_fixed_router(studio, "calibrated-router", ["orders", "billing"], "orders")
    assert u.router_rate(studio, None, "calibrated-router") == 0.05 and u.router_rate(studio, None, None) == 0.05
    assert "no out-of-scope threshold" in u.rate_note(studio, None, "calibrated-router", 0.05)
    meta = json.loads((entry.path / "adapter_config.json").read_text())
    meta["out_of_scope"] = {"threshold": 0.72, "in_scope_recall": 0.95, "validation_rows": 80}  # before scores
    (entry.path / "adapter_config.json").write_text(json.dumps(meta))
    assert "trained before out-of-scope scores" in u.rate_note(studio, None, "calibrated-router", 0.3)
    [route] = studio.route("calibrated-router", ["hello"], false_rejection=0.3)  # no curve: the saved threshold
    assert route.in_scope and route.threshold == pytest.approx(0.28) and route.confidence > 0.72
    curve = {"false_rejection": [0.0, 0.1, 0.2], "threshold": [1.0, 0.5, 0.0], "oos_recall": [0.1, 0.6, 0.9]}
    meta["out_of_scope"] = {"score": "msp", "threshold": 0.5, "false_rejection": 0.1, "curve": curve}
    (entry.path / "adapter_config.json").write_text(json.dumps(meta))
    assert u.router_rate(studio, None, "calibrated-router") == 0.1
    note = u.rate_note(studio, None, "calibrated-router", 0.19)
    assert "sends 20% of in-scope messages" in note and "catches 90% of its out-of-scope examples" in note
    [route] = studio.route("calibrated-router", ["hello"])  # 99.3% sure: msp score 0.0067, below 0.5
    assert route.in_scope and route.threshold == 0.5 and "no instruction adapter" in route.reason
    [route] = studio.route("calibrated-router", ["hello"], false_rejection=0.2)  # the slider's setting
    assert route.fallback and not route.in_scope and "above the router's threshold 0" in route.reason
    head, _ = u.route_head(studio, None, "calibrated-router", "hello", 0.2, handoff="We will call you.")
    assert "it looks out of scope, unlike the messages the router learned from" in head  # words first
    assert "(out-of-scope score 0.00669, above its threshold 0" in head
    with pytest.raises(AdapterError, match="share from 0 to 0.5"):
        studio.route("calibrated-router", ["hello"], false_rejection=0.9)


def test_one_time_estimate_a_stopping_run_and_a_stopped_one(tmp_path):
    """The progress line says "about N min left" before the first step (the plan's figure) and during
    the run (from real steps), "stopping…" as soon as Stop is asked for, and no time left once it ended;
    a page redraws only when something changed."""
    from adapter_core.engine.jobs import Job
    from adapter_core.engine.train import TrainConfig

    studio = Studio(tmp_path)
    config = TrainConfig(data=str(SAMPLES_DIR / "support_routing.csv"), name="eta")
    job = Job(config, studio.jobs.store.create("eta", config.to_dict()), status="training")
    studio.jobs._jobs[job.id] = job
    training = {"kind": "status", "status": "training", "info": {"device": "cpu", "estimated_seconds": 150.0}}
    job.events += [{"kind": "data"}, training]
    assert "about 2 min left" in h.progress(studio, None, job.id)["status"]
    source = {"name": "support_routing.csv", "rows": 480, "task": "classification", "labels": ["a", "b"]}
    assert sv.can_start(studio, "minilm", source) and not sv.can_start(studio, "minilm", source, None, job.id)
    drawn = h.drawn_key(studio, None, job.id)
    assert h.drawn_key(studio, None, job.id) == drawn  # nothing new: the page keeps what it shows
    job.events.append(
        {
            "kind": "step",
            "step": 3,
            "total_steps": 10,
            "loss": 1.0,
            "elapsed_s": 30.0,
            "eta_s": 70.0,
            "examples_per_sec": 0.4,
        }
    )
    status = h.progress(studio, None, job.id)["status"]
    assert "step 3/10, about 1 min left (elapsed 00:30, 0.4 examples/s)" in status, status
    assert "ETA" not in status and "0 examples/s" not in status and "training time" not in status
    assert h.drawn_key(studio, None, job.id) != drawn
    drawn = h.drawn_key(studio, None, job.id)
    studio.jobs.stop(job.id)
    assert h.drawn_key(studio, None, job.id) != drawn  # the next tick shows it
    assert "eta**: stopping… · at step 3/10; saving the adapter" in h.progress(studio, None, job.id)["status"]
    job.status = "stopped"
    job.finished.set()
    assert sv.can_start(studio, "minilm", source, None, job.id)  # the page's run ended: Start is free again
    status = h.progress(studio, None, job.id)["status"]
    assert "stopped · stopped at step 3 of 10 after 00:30; saved" in status and "left" not in status, status
    job.events[0]["time"] = 1000.0  # with times, the whole run's: loading and evaluations, not only steps
    job.events.append({"kind": "done", "status": "stopped", "time": 1095.0})
    assert "stopped at step 3 of 10 after 01:35; saved" in h.progress(studio, None, job.id)["status"]
    job.status = "failed"
    assert "failed · after step 3 of 10" in h.progress(studio, None, job.id)["status"]
    assert [duration(s) for s in (2, 44, 61, 89, 3600, 7200)] == ["5 s", "45 s", "1 min", "1 min", "60 min", "2.0 h"]


def test_compare_curves_say_why_they_are_empty():
    from studio import charts

    def note(fig):
        return fig.layout.annotations[0].text

    assert note(charts.overlay({})) == "Pick two or more above to see their training curves here."
    assert "uploaded or trained elsewhere" in note(charts.overlay({"a": [], "b": []}))
    drawn = charts.overlay({"a": [{"kind": "step", "step": 1, "loss": 1.0}]})
    assert not drawn.layout.annotations and list(drawn.data[0].x) == [1]


def test_a_report_with_no_mistakes_hides_the_empty_misclassified_table():
    from studio.tabs.train import misclassified

    wrong = {"misclassified": [{"text": "refund?", "true": "billing", "predicted": "orders", "confidence": 0.9}]}
    assert misclassified({"misclassified": []})["visible"] is False
    shown = misclassified(wrong)
    assert shown["visible"] is True and shown["value"].values.tolist() == [["refund?", "billing", "orders", 0.9]]
