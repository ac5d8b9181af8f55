"""Model cards: the `README.md` of every saved adapter folder, and the training curve as `curve.png`.

A card holds front matter the Hub reads (`library_name`, `base_model`, `tags`, `license`, `datasets`),
then the task, labels, adapter settings and size, the training settings, the validation metrics and
curve, and how to load the adapter. Nothing in it names a server path or a data file: the base is
given by its hub id only, the data by its row counts.

The card is part of the adapter file format: `io.save_adapter` writes it with every adapter, so it
lives below the engine; what is fit to publish is `public`, and pushing it is `share`'s.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCardData

from .card_usage import usage_section
from .catalog import CATALOG, embedded_path
from .config import AdapterConfig
from .metric_names import metric_label
from .public import base_label, md, public_base
from .schema import CARD_FILE, CURVE_FILE, CURVE_PNG, base_name, read_jsonl, read_safetensors_header

LIBRARY_NAME = "adapter-studio"
_SETTINGS = ("preset", "mode", "epochs", "lr", "batch_size", "grad_accum", "max_length", "seed", "base_dropout")
log = logging.getLogger("adapter_core")


def read_curve(folder: Path) -> list[dict[str, Any]]:
    """The training events kept beside an adapter: `metrics.jsonl` in its folder (the library's layout),
    or in its run folder when the adapter is a run's `adapter/`."""
    folder = Path(folder)
    for path in (folder / CURVE_FILE, folder.parent / CURVE_FILE if folder.name == "adapter" else None):
        if path is not None and path.is_file():
            return read_jsonl(path)
    return []


def _rows(meta: dict[str, Any], events: list[dict[str, Any]]) -> tuple[Any, Any]:
    training = meta.get("training") or {}
    info = next((e.get("info") or {} for e in events if (e.get("info") or {}).get("train_rows")), {})
    return training.get("train_rows", info.get("train_rows")), training.get("val_rows", info.get("val_rows"))


def curve_png(events: list[dict[str, Any]], path: Path) -> bool:
    """Draw training loss, validation loss and accuracy against steps; False when there is nothing to draw."""
    steps = [e for e in events if e.get("kind") == "step" and _num(e.get("loss"))]
    evals = [e for e in events if e.get("kind") == "eval" and isinstance(e.get("metrics"), dict)]
    if not steps and not evals:
        return False
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend switched

    fig = Figure(figsize=(7, 3.6), dpi=100)
    ax = fig.add_subplot()
    ax.plot([e["step"] for e in steps], [e["loss"] for e in steps], lw=1.2, label="train loss")
    val = [(e["step"], e["metrics"]["val_loss"]) for e in evals if _num(e["metrics"].get("val_loss"))]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    acc = [(e["step"], e["metrics"]["accuracy"]) for e in evals if _num(e["metrics"].get("accuracy"))]
    handles, labels = ax.get_legend_handles_labels()
    if acc:
        ax2 = ax.twinx()
        ax2.plot(*zip(*acc, strict=True), "s-", color="tab:green", label="validation accuracy")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("accuracy")
        more = ax2.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    fig.subplots_adjust(left=0.09, right=0.9, top=0.96, bottom=0.27)  # fixed: tight_layout would draw twice
    fig.savefig(path, format="png")
    return True


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def base_license(meta: dict[str, Any]) -> str | None:
    """The base model's licence, from the card the embedded package ships with it."""
    name = base_name(meta)
    entry = CATALOG.get(name) if isinstance(name, str) else None
    path = embedded_path(entry) if entry else None
    readme = path / CARD_FILE if path is not None and path.is_dir() else None
    if readme is None or not readme.is_file():
        return None
    from huggingface_hub import metadata_load

    try:
        return (metadata_load(readme) or {}).get("license")
    except Exception:  # a card we cannot parse is no reason to fail a save
        return None


def parameters(folder: Path) -> int:
    """Weights in the folder's safetensors files, from their headers."""
    return sum(
        math.prod(shape)
        for f in sorted(Path(folder).glob("*.safetensors"))
        for _, shape in read_safetensors_header(f).values()
    )


def model_card(
    meta: dict[str, Any],
    events: list[dict[str, Any]] = (),
    params: int | None = None,
    has_curve: bool = False,
    repo_id: str | None = None,
    adapterhub: bool = False,
    license: str | None = None,
    datasets: list[str] | None = None,
) -> str:
    """The card's text. `repo_id`: where it will live on the Hub (the loading snippets use it);
    `adapterhub`: the card of an AdapterHub export (loading with `adapters` comes first)."""
    config = AdapterConfig.from_dict(meta["config"])
    task, labels = meta["task"], meta.get("labels") or []
    base = public_base(meta)
    tags = [LIBRARY_NAME, "adapters", "bottleneck-adapter", config.placement]
    tags.append("text-classification" if task == "classification" else "text-generation")
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        base_model=base,
        tags=tags + (["adapterhub"] if adapterhub else []),
        license=license or base_license(meta),
        datasets=list(datasets) if datasets else None,
        pipeline_tag="text-classification" if task == "classification" else "text-generation",
    )
    name = md(meta.get("name") or "adapter")
    r = meta.get("bottleneck") or config.bottleneck_for(meta["base"]["hidden_size"])
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {name}",
        "",
        f"A bottleneck adapter ({config.placement}, bottleneck {r}) for the frozen base model "
        + (f"[{base}](https://huggingface.co/{base})" if base else f"`{md(base_label(meta))}`")
        + ", made with Adapter Studio (`adapter_core`). Only the adapter's weights are here; the base model loads "
        "from its own repository.",
        "",
        "## Task",
        "",
    ]
    if task == "classification":
        shown = ", ".join(md(label) for label in labels[:50]) + (" ..." if len(labels) > 50 else "")
        lines += [f"Text classification into {len(labels)} labels, in index order: {shown}.", ""]
    else:
        lines += ["Instruction following: the adapter steers the base model's own language-model head.", ""]
    lines += _adapter_section(meta, config, r, params)
    lines += _training_section(meta, events, has_curve)
    lines += _answer_scores_section(meta.get("answer_scores"))
    lines += usage_section(meta, repo_id, adapterhub)
    return "\n".join(lines).rstrip() + "\n"


def _adapter_section(meta: dict[str, Any], config: AdapterConfig, r: int, params: int | None) -> list[str]:
    rows = [
        ("placement", config.placement),
        ("bottleneck", r),
        ("activation", config.activation),
        ("scaling", config.scaling),
        ("dropout", config.dropout),
        ("init", config.init),
        ("layers left out", ", ".join(map(str, config.leave_out)) or "none"),
    ]
    if config.target_modules:
        rows.append(("target modules", ", ".join(f"{k}: {v}" for k, v in config.target_modules.items())))
    if meta["task"] == "classification":
        head = meta.get("head")
        rows += [("pooling", meta.get("pooling")), ("head", f"two layers ({head['activation']})" if head else "linear")]
    if params is not None:
        rows.append(("trainable parameters", f"{params:,}"))
    base = meta["base"]
    rows.append(("base", f"{base['model_type']}, hidden size {base['hidden_size']}, {base['num_layers']} layers"))
    return ["## Adapter", "", "| setting | value |", "| --- | --- |"] + [f"| {k} | {md(v)} |" for k, v in rows] + [""]


def _training_section(meta: dict[str, Any], events: list[dict[str, Any]], has_curve: bool) -> list[str]:
    training, settings = meta.get("training") or {}, meta.get("train_config") or {}
    train_rows, val_rows = _rows(meta, events)
    if not training and not settings and train_rows is None:
        return ["## Training", "", "No training record came with this adapter (uploaded or imported).", ""]
    rows = [(k.replace("_", " "), settings[k]) for k in _SETTINGS if settings.get(k) is not None]
    rows += [("training rows", train_rows), ("validation rows", val_rows)]
    rows += [(k.replace("_", " "), training.get(k)) for k in ("status", "step", "train_seconds")]
    lines = ["## Training", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {md(k)} | {md(v)} |" for k, v in rows if v is not None]
    metrics = training.get("metrics") or {}
    if metrics:
        lines += ["", "Validation metrics of the kept checkpoint:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {md(metric_label(k))} | {v:.4f} |" for k, v in metrics.items() if _num(v)]
    if has_curve:
        lines += ["", f"![Training curve]({CURVE_PNG})"]
    return lines + [""]


_SCORE_COLUMNS = {"rouge_l": ("ROUGE-L", "{:.3f}"), "chrf": ("chrF", "{:.1f}"), "exact_match": ("exact match", "{:.0%}"),
                  "loop_rate": ("loops", "{:.0%}"), "cut_rate": ("cut at limit", "{:.0%}")}  # fmt: skip


def _answer_scores_section(scores: Any) -> list[str]:
    lines = answer_scores_lines(scores)
    return ["## Answer scores", "", *lines, ""] if lines else []


def answer_scores_lines(scores: Any) -> list[str]:
    """An instruction adapter's answers scored beside the bare base's (the engine's `answer_scores`, saved
    with the adapter) as Markdown: how they were generated, then a table, one row per model."""
    if not isinstance(scores, dict) or not isinstance(scores.get("scores"), list):
        return []
    how = scores.get("settings") or {}
    said = f"{how.get('pairs', '?')} held-out pairs, {how.get('decoding', 'greedy')} decoding, at most "
    said += f"{how.get('max_new_tokens', '?')} new tokens, all models in one batch"
    lines = [f"Answers scored against the reference responses ({md(said)}):", ""]
    lines += ["| model | " + " | ".join(n for n, _ in _SCORE_COLUMNS.values()) + " |"]
    lines += ["|---" * (len(_SCORE_COLUMNS) + 1) + "|"]
    for row in scores["scores"]:
        if isinstance(row, dict):
            cells = [f.format(row[k]) if _num(row.get(k)) else "" for k, (_, f) in _SCORE_COLUMNS.items()]
            lines.append(f"| {md(row.get('adapter'))} | " + " | ".join(cells) + " |")
    return lines


def write_card(folder: str | Path, meta: dict[str, Any], adapterhub: bool = False, **kwargs: Any) -> Path:
    """Write `README.md` (and `curve.png` when there is a curve) into an adapter folder. A checkpoint of a
    run still going gets the card without the picture: the run's last save draws it."""
    folder = Path(folder)
    events = kwargs.pop("events", None)
    events = read_curve(folder) if events is None else events
    has_curve = False
    try:
        running = (meta.get("training") or {}).get("status") == "running"
        has_curve = not running and curve_png(events, folder / CURVE_PNG)
    except ImportError:
        log.warning("matplotlib is not installed: the model card of %r has no curve picture.", folder.name)
    text = model_card(meta, events, parameters(folder), has_curve, adapterhub=adapterhub, **kwargs)
    (folder / CARD_FILE).write_text(text, encoding="utf-8")
    return folder / CARD_FILE
