"""Compare and Library views: adapters side by side, their curves and tables, and scores on a test file.

Plain functions over `Studio`, owner-scoped like every handler.
"""

from __future__ import annotations

import pandas as pd

from adapter_core import AdapterError
from adapter_core.engine import SCORE_NAMES, scores_settings_line

from . import charts, runs_view
from .report_view import confusion_figure, per_class_table
from .service import Studio
from .text import METRICS, md, metric_label

LIBRARY_METRICS = ("accuracy", "perplexity")  # their columns are named by `metric_label`
LIBRARY_COLUMNS = [
    "adapter", "task", "base", "bottleneck", "placement", "size (MB)", "status", "owner",
    *map(metric_label, LIBRARY_METRICS),
]  # fmt: skip


def library_table(studio: Studio, owner: str | None = None) -> pd.DataFrame:
    rows = []
    for e in studio.library.entries(owner=studio.owner(owner)):
        cfg = e.meta.get("config", {})
        metrics = e.training.get("metrics") or {}
        rows.append(
            {
                "adapter": e.name,
                "task": e.task,
                "base": e.base,
                "bottleneck": e.meta.get("bottleneck"),
                "placement": cfg.get("placement"),
                "size (MB)": round(e.size_bytes / 1e6, 2),
                "status": e.training.get("status", "uploaded"),
                "owner": "shared example" if owner is not None and e.owner is None else "yours",
                **{metric_label(k): round(metrics[k], 4) if k in metrics else None for k in LIBRARY_METRICS},
            }
        )
    table = pd.DataFrame(rows, columns=LIBRARY_COLUMNS)
    # A metric no adapter here has (perplexity in a library of routers) is an empty column: left out.
    empty = [c for c in map(metric_label, LIBRARY_METRICS) if rows and table[c].isna().all()]
    # Whose adapter it is means something only where strangers share the studio.
    return table.drop(columns=empty + ([] if studio.policy.public else ["owner"]))


COMPARE_COLUMNS = ["adapter", "task", "bottleneck", "placement", "trainable params", "size (MB)", "train time (s)"]


def compare_table(studio: Studio, owner: str | None, adapters: list[str]) -> pd.DataFrame:
    """Sizes and validation metrics side by side; the parameter count is the weights' own, the same
    number the Adapter tab estimates before training."""
    rows = []
    for name in adapters:
        e = studio.library.get(name, owner=studio.owner(owner))
        metrics = e.training.get("metrics") or {}
        seconds = e.training.get("train_seconds")
        rows.append(
            {
                "adapter": name,
                "task": e.task,
                "bottleneck": e.meta.get("bottleneck"),
                "placement": e.meta.get("config", {}).get("placement"),
                "trainable params": f"{e.parameters:,}",
                "size (MB)": f"{e.size_bytes / 1e6:.2f}",
                "train time (s)": f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "",
                **{metric_label(k): f"{v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float))},
            }
        )
    frame = pd.DataFrame(rows)
    return frame if rows else pd.DataFrame(columns=COMPARE_COLUMNS)


def check_compare_selection(adapters: list[str] | None, with_base: bool = False) -> list[str]:
    adapters = list(adapters or [])
    twice = next((n for n in adapters if adapters.count(n) > 1), None)
    if twice is not None:
        raise AdapterError(f"{twice!r} is picked more than once; pick each adapter once.")
    count = len(adapters) + (1 if with_base else 0)
    if not 2 <= count <= 5 or len(adapters) > 4:
        raise AdapterError(f"Select 2 to 4 adapters (and the base, if you like) to compare; you chose {count}.")
    return adapters


def compare_outputs(studio: Studio, owner: str | None, adapters: list[str], text: str, with_base: bool) -> list[str]:
    """The same input through each adapter: a label with its confidence, or a generated answer.
    With `with_base`, the bare base of the instruction adapters answers too. Adapters that share a
    base run as one mixed batch (one row each), so comparing four costs about one pass, not four."""
    adapters = check_compare_selection(adapters, with_base)
    text = studio.policy.check_prompt(text, "input")
    entries = [studio.library.get(n, owner=studio.owner(owner)) for n in adapters]
    chat_bases = {e.base for e in entries if e.task == "instruction"}
    if with_base and len(chat_bases) != 1:
        raise AdapterError("The bare base model can answer beside instruction adapters of one base; select those.")
    labelled = [n for n, e in zip(adapters, entries, strict=True) if e.task == "classification"]
    chatting: list[str | None] = [n for n, e in zip(adapters, entries, strict=True) if e.task == "instruction"]
    if with_base:
        chatting.append(None)
    out = {}
    for name, p in zip(labelled, studio.classify(labelled, [text] * len(labelled), owner), strict=True):
        top = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:3]
        out[name] = f"### {md(name)}\n**{md(p.label)}** ({p.confidence:.1%})  \n" + ", ".join(
            f"{md(k)} {v:.1%}" for k, v in top
        )
    base_name = next(iter(chat_bases), "")
    answers = studio.answer(chatting, [text] * len(chatting), base_name, max_new_tokens=120, owner=owner)
    for name, answer in zip(chatting, answers, strict=True):
        out[name] = f"### {md(name) if name else f'base: {md(base_name)}'}\n{answer}"
    return [out[n] for n in [*adapters, *([None] if with_base else [])]]


def compare_curves(studio: Studio, owner: str | None, adapters: list[str]):
    """The selected adapters' training curves, each in its colour on every Compare chart."""
    curves = {n: studio.library.get(n, owner=studio.owner(owner)).curve() for n in adapters}
    return charts.overlay(curves, runs_view.colours(studio, owner))


def compare_evaluate(
    studio: Studio, owner: str | None, adapters: list[str], path: str | None, oos_label: str = ""
) -> pd.DataFrame:
    return compare_evaluation(studio, owner, adapters, path, oos_label)["scores"]


def compare_evaluation(
    studio: Studio, owner: str | None, adapters: list[str], path: str | None, oos_label: str = ""
) -> dict:
    """Every selected adapter on a labelled test file: the scores, and for each classification adapter
    its confusion matrix (one figure each, in selection order) and per-class rows (stacked). With
    `oos_label`, the file's rows of that label are out-of-scope messages: the scores cover the others, and
    each router's row says how its saved decision sets those apart."""
    adapters = check_compare_selection(adapters)
    if not path:
        raise AdapterError("Upload a labelled test file (the same columns as the training data).")
    rows = studio.evaluate(adapters, path, owner, oos_label=(oos_label or "").strip() or None)
    reports = {r["adapter"]: r.pop("report") for r in rows if r.get("report")}
    per_class = [per_class_table(report, adapter=name) for name, report in reports.items()]
    rows, note = with_answer_scores(studio, owner, adapters, path, rows)
    return {
        "scores": scores_table(rows),
        "answer_note": note,
        "matrices": [confusion_figure(r, f"{name}: confusion matrix (test file)") for name, r in reports.items()],
        "per_class": pd.concat(per_class, ignore_index=True) if per_class else per_class_table(None, adapter=""),
    }


def scores_table(rows: list[dict]) -> pd.DataFrame:
    """The evaluation's rows as the Test scores table: figures on the test file only. The engine also
    returns the test file's loss under the name `val_loss`, which reads as the training validation loss
    (that one is in the Adapters table); perplexity already gives it for instruction adapters."""
    table = pd.DataFrame(rows).drop(columns=["val_loss"], errors="ignore")
    return table.rename(columns={k: metric_label(k) for k in METRICS})


def with_answer_scores(
    studio: Studio, owner: str | None, adapters: list[str], path: str, rows: list[dict]
) -> tuple[list[dict], str]:
    """The evaluation's rows with a score column for each instruction adapter's answers to the test file's
    pairs, and a row for each bare base beside them (`Studio.score_answers`: one mixed batch per base);
    and how the answers were made, in words. Rows of other adapters are left as they are."""
    chat = [n for n in adapters if studio.library.get(n, owner=studio.owner(owner)).task == "instruction"]
    if not chat:
        return rows, ""
    result = studio.score_answers(chat, path, owner)
    by_name = {s["adapter"]: {SCORE_NAMES[k]: s[k] for k in SCORE_NAMES} for s in result["scores"]}
    out = [{**r, **by_name.pop(r["adapter"], {})} for r in rows]
    out += [{"adapter": name, **scores} for name, scores in by_name.items()]  # the bare bases
    how = scores_settings_line(result["settings"])
    return (
        out,
        f"Instruction adapters' answers scored against the file's responses: {how}, each base's bare "
        "answers beside them in one batch.",
    )
