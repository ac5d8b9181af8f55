"""Per-class evaluation: metrics and the confusion matrix against scikit-learn's, the order that makes
confusions stand out, the report on a tiny model, and `evaluate` in the CLI."""

import json

import pytest
import torch
from helpers import ROUTING, tiny_model
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from transformers import AutoTokenizer

from adapter_core import AdapterConfig, adapter_parameters, add_adapter, classify, load_base, save_adapter
from adapter_core.catalog import CATALOG, Base, embedded_path
from adapter_core.cli import main
from adapter_core.engine.batches import tokenize
from adapter_core.engine.data import load_data
from adapter_core.engine.evaluation import evaluate_file
from adapter_core.engine.metrics import evaluate, macro_f1
from adapter_core.engine.report import classification_report, confusion, confusion_order, per_class

LABELS = ["billing", "orders", "tech", "returns", "other"]
# "returns" (3) is never predicted; "other" (4) is predicted but never the gold label.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 0, 1]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1, 2, 4, 0, 2, 0, 4]


def test_per_class_matches_scikit_learn():
    out = per_class(Y_TRUE, Y_PRED, LABELS)
    p, r, f, s = precision_recall_fscore_support(Y_TRUE, Y_PRED, labels=range(5), zero_division=0)
    assert [c["label"] for c in out["classes"]] == LABELS
    for k, c in enumerate(out["classes"]):
        assert c["precision"] == pytest.approx(p[k]) and c["recall"] == pytest.approx(r[k])
        assert c["f1"] == pytest.approx(f[k]) and c["support"] == s[k]
    returns, other = out["classes"][3], out["classes"][4]
    assert returns["precision"] == 0.0 and returns["support"] == 2  # never predicted: 0, not NaN
    assert other["recall"] == 0.0 and other["support"] == 0 and other["precision"] == 0.0
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(Y_TRUE, Y_PRED, average=average, zero_division=0)
        assert out[average] == pytest.approx({"precision": ap, "recall": ar, "f1": af})
    assert out["accuracy"] == pytest.approx(sum(t == p for t, p in zip(Y_TRUE, Y_PRED, strict=True)) / len(Y_TRUE))
    # The macro-F1 training reports is the same number.
    assert out["macro"]["f1"] == pytest.approx(macro_f1(Y_PRED, Y_TRUE, 5))


def test_a_class_absent_from_both_does_not_count_in_the_macro_average():
    out = per_class([0, 1, 1], [0, 1, 0], ["a", "b", "unused"])
    _, _, f, _ = precision_recall_fscore_support([0, 1, 1], [0, 1, 0], average="macro", zero_division=0)
    assert out["macro"]["f1"] == pytest.approx(f) and out["classes"][2]["f1"] == 0.0


def test_confusion_matches_scikit_learn():
    assert confusion(Y_TRUE, Y_PRED, 5) == confusion_matrix(Y_TRUE, Y_PRED, labels=range(5)).tolist()


def test_confusion_order_puts_the_largest_confusion_first():
    matrix = [
        [5, 0, 0, 1],  # 0
        [0, 9, 0, 0],  # 1: never confused
        [1, 0, 4, 6],  # 2 taken for 3 six times: the biggest confusion
        [2, 0, 3, 7],  # 3
    ]
    order = confusion_order(matrix)
    assert sorted(order) == [0, 1, 2, 3]
    assert order[:2] == [2, 3]  # the pair (2, 3), its larger direction (true 2) leading
    assert order[2] == 0 and order[-1] == 1  # then the next confusion; the never-confused class last
    assert matrix[order[0]][order[1]] == max(matrix[i][j] for i in range(4) for j in range(4) if i != j)
    assert confusion_order([[3, 0], [0, 2]]) == [0, 1]  # nothing confused: the labels' own order


@pytest.fixture(scope="module")
def tiny_classifier():
    """A tiny BERT (hidden 32) with MiniLM's tokenizer and a random classification adapter: random but
    varied predictions, some right and some wrong."""
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))
    model = tiny_model("bert", head="base")
    model.resize_token_embeddings(len(tokenizer))
    add_adapter(model, "route", AdapterConfig(bottleneck=8), labels=["billing", "orders", "tech"])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in [*adapter_parameters(model, "route").values(), *model.adapter_core_heads["route"].parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 2)
    return model.eval(), tokenizer


def test_classification_report_on_a_tiny_model(tiny_classifier):
    model, tok = tiny_classifier
    data = load_data(ROUTING, "classification")
    frame = data.frame.iloc[:90]  # more than one evaluation batch of 64
    labels = ["billing", "orders", "tech"]
    ds = tokenize(frame, "classification", tok, 48, labels)
    texts = list(frame["text"])
    report = classification_report(model, "route", ds, texts, labels, tok.pad_token_id, limit=1000)
    predicted = classify(model, tok, texts, "route", max_length=48)
    gold = list(frame["label"])
    wrong = [(t, g, p) for t, g, p in zip(texts, gold, predicted, strict=True) if p.label != g]
    assert report["labels"] == labels and report["rows"] == 90
    assert 0 < len(wrong) < 90  # the fixture's random model is right sometimes and wrong sometimes
    mis = report["misclassified"]
    assert len(mis) == len(wrong) == 90 - sum(report["confusion"][k][k] for k in range(3))
    assert [m["confidence"] for m in mis] == sorted((m["confidence"] for m in mis), reverse=True)
    by_text = {t: (g, p) for t, g, p in wrong}
    for m in mis:
        g, p = by_text[m["text"]]
        assert (m["true"], m["predicted"]) == (g, p.label) and m["confidence"] == pytest.approx(p.confidence, abs=1e-4)
    # Consistent with the per-class counts: support per true class, mistakes per row of the matrix.
    pc = report["per_class"]
    for k, c in enumerate(pc["classes"]):
        assert c["support"] == gold.count(labels[k]) == sum(report["confusion"][k])
        assert sum(m["true"] == labels[k] for m in mis) == c["support"] - report["confusion"][k][k]
    assert pc["accuracy"] == pytest.approx(1 - len(wrong) / 90)
    assert sorted(report["order"]) == [0, 1, 2]
    assert (
        len(classification_report(model, "route", ds, texts, labels, tok.pad_token_id, limit=3)["misclassified"]) == 3
    )


def test_evaluate_file_gives_the_metrics_of_evaluate_and_the_report_in_one_pass(tiny_classifier, tmp_path):
    model, tok = tiny_classifier
    data = load_data(ROUTING, "classification")
    data.frame.iloc[:70][["text", "label"]].to_csv(tmp_path / "test.csv", index=False)
    out = evaluate_file(Base("tiny", model, tok, "encoder"), "route", tmp_path / "test.csv", max_length=48)
    ds = tokenize(data.frame.iloc[:70], "classification", tok, 48, ["billing", "orders", "tech"])
    expected = evaluate(model, "route", "classification", ds, tok.pad_token_id, num_labels=3)
    assert {k: out[k] for k in expected} == pytest.approx(expected, abs=1e-6)
    assert out["rows"] == out["report"]["rows"] == 70 and out["report"]["per_class"]["accuracy"] == out["accuracy"]


@pytest.fixture(scope="module")
def minilm_adapter(tmp_path_factory):
    """A real MiniLM classification adapter with random weights, saved to a folder the CLI can load."""
    base = load_base("minilm")
    add_adapter(base.model, "route", AdapterConfig(bottleneck=8), labels=["billing", "orders", "tech"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model_params(base.model, "route"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    folder = tmp_path_factory.mktemp("eval") / "route"
    return save_adapter(base.model, "route", folder, extra={"base_model": "minilm"})


def model_params(model, name):
    return [*adapter_parameters(model, name).values(), *model.adapter_core_heads[name].parameters()]


@pytest.mark.slow
def test_cli_evaluate_reports_per_class_metrics(minilm_adapter, capsys, tmp_path):
    data = tmp_path / "test.csv"
    load_data(ROUTING, "classification").frame.iloc[:120][["text", "label"]].to_csv(data, index=False)
    args = ["evaluate", "--adapter", str(minilm_adapter), "--data", str(data), "--max-length", "48"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = out["report"]
    assert out["rows"] == report["rows"] == 120 and report["labels"] == ["billing", "orders", "tech"]
    assert report["per_class"]["accuracy"] == pytest.approx(out["accuracy"])
    assert report["per_class"]["macro"]["f1"] == pytest.approx(out["macro_f1"])
    assert sum(map(sum, report["confusion"])) == 120 and sorted(report["order"]) == [0, 1, 2]
    assert len(report["misclassified"]) == min(50, 120 - sum(report["confusion"][k][k] for k in range(3)))
    assert {"text", "true", "predicted", "confidence"} == set(report["misclassified"][0])

    assert main(args) == 0
    text = capsys.readouterr().out
    assert "precision" in text and "support" in text and "macro avg" in text
    for c in report["per_class"]["classes"]:
        line = next(ln for ln in text.splitlines() if ln.startswith(c["label"] + " "))
        assert f"{c['f1']:.3f}" in line and line.rstrip().endswith(str(c["support"]))
