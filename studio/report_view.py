"""What a finished run learned, as tables and a figure: per-class scores, the confusion matrix, the
misclassified validation examples, and (instruction runs) sample answers and answer scores beside the
bare base's.

The numbers come from the engine (`adapter_core.engine.report.classification_report`, saved by the
run as `report.json` and sent in its `done` event); nothing here computes a metric.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from adapter_core.engine import ANSWER_SCORES_FILE, REPORT_FILE, Run, correct, scores_markdown

from . import charts

PER_CLASS_COLUMNS = ["label", "precision", "recall", "F1", "support"]
MISCLASSIFIED_COLUMNS = ["text", "true", "predicted", "confidence"]
SAMPLE_COLUMNS = ["prompt", "base model", "adapter"]
# The per-class table's last rows, in plain words: macro counts each label once, weighted each row once.
AVERAGES = {"macro": "(average over labels)", "weighted": "(average over rows)"}
MAX_TEXT = 300  # characters of a misclassified example or an answer shown in a table cell


def run_report(run: Run, done: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A classification run's report: from its `done` event, else from `report.json` in its folder."""
    report = ((done or {}).get("info") or {}).get("report")
    if isinstance(report, dict):
        return report
    try:
        report = json.loads((run.dir / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and "per_class" in report else None


def per_class_table(report: dict[str, Any] | None, adapter: str | None = None) -> pd.DataFrame:
    """One row per class in the report's order (biggest confusions first), then macro and weighted
    averages; with `adapter`, a first column names it (Compare stacks several)."""
    columns = (["adapter"] if adapter is not None else []) + PER_CLASS_COLUMNS
    if not report:
        return pd.DataFrame(columns=columns)
    per_class = report["per_class"]
    classes = per_class["classes"]
    order = report.get("order") or list(range(len(classes)))
    rows = [_row(classes[i]["label"], classes[i], classes[i].get("support")) for i in order]
    support = sum(c.get("support") or 0 for c in classes)
    for key, name in AVERAGES.items():
        if isinstance(per_class.get(key), dict):
            rows.append(_row(name, per_class[key], support))
    frame = pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)
    if adapter is not None:
        frame.insert(0, "adapter", adapter)
    return frame


def _row(label: str, scores: dict[str, Any], support: Any) -> list[Any]:
    return [label, *(round(float(scores[k]), 3) for k in ("precision", "recall", "f1")), support]


def misclassified_table(report: dict[str, Any] | None) -> pd.DataFrame:
    """The validation examples the model got wrong, the most confident mistakes first."""
    rows = [
        [_cut(m["text"]), m["true"], m["predicted"], round(float(m["confidence"]), 3)]
        for m in (report or {}).get("misclassified") or []
    ]
    return pd.DataFrame(rows, columns=MISCLASSIFIED_COLUMNS)


def confusion_figure(report: dict[str, Any] | None, title: str = "Confusion matrix (validation)"):
    if not report:
        return None
    return charts.confusion(report["confusion"], report["labels"], report.get("order"), title)


def report_summary(report: dict[str, Any] | None) -> str:
    """One line over the tables: how many validation rows, how many wrong."""
    if not report:
        return ""
    rows = report.get("rows") or sum(map(sum, report["confusion"]))
    wrong = rows - correct(report)
    return (
        f"**Validation: {rows - wrong} of {rows} right, {wrong} wrong.** Rows of the matrix are the true labels, "
        "columns the predicted ones; labels are sorted so the biggest confusions come first."
    )


def run_answer_scores(run: Run, done: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """An instruction run's answer scores (adapter and bare base) and their settings: from its `done`
    event, else from answer_scores.json in its folder."""
    scores = ((done or {}).get("info") or {}).get("answer_scores")
    if not isinstance(scores, dict):
        try:
            scores = json.loads((run.dir / ANSWER_SCORES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    if not isinstance(scores, dict) or not isinstance(scores.get("scores"), list):
        return None
    return {"settings": scores.get("settings") or {}, "scores": scores["scores"]}


def answer_scores_text(scores: dict[str, Any] | None) -> str:
    """The answer scores as Markdown, under a heading; empty without scores."""
    if not scores:
        return ""
    return "**Answer scores on validation pairs: the adapter beside the bare base model**\n\n" + scores_markdown(scores)


def samples_table(samples: list[dict[str, Any]] | None) -> pd.DataFrame:
    """Fixed validation prompts answered by the bare base and by the adapter at its latest evaluation."""
    rows = [[_cut(s.get("prompt", "")), _cut(s.get("base", "")), _cut(s.get("adapter", ""))] for s in samples or []]
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def _cut(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
