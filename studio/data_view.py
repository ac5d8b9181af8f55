"""The Data step's handlers: where a data file may come from, what it holds, and which base can learn it.

Plain functions over `Studio`, like `handlers`; the Data tab and the wizard's restore call them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter_core import CATALOG, AdapterError
from adapter_core.engine import (
    MAX_BYTES,
    OPTIONAL,
    REQUIRED,
    describe_lengths,
    detect_columns,
    read_table,
    token_view,
    tokenize,
    validate,
)

from . import charts
from .sample_files import SAMPLES, SAMPLES_DIR
from .service import Studio
from .text import md, studio_words
from .train_view import model_choices


def sample_source(choice: str) -> dict[str, str]:
    """A bundled sample, by its name in the picker: the only way a server file is chosen."""
    if choice not in SAMPLES:
        raise AdapterError(f"Pick one of the bundled samples: {'; '.join(SAMPLES)}.")
    file, task = SAMPLES[choice]
    return {"path": str(SAMPLES_DIR / file), "name": file, "task": task}


def upload_label(studio: Studio) -> str:
    """The Data tab's upload box, with the largest file this studio reads (the policy's, not a constant)."""
    return f"…or upload CSV / TSV / JSONL ({studio.policy.max_data_bytes / 2**20:g} MB max)"


def upload_source(studio: Studio, path: str | None) -> dict[str, str]:
    """A visitor's uploaded data file, checked against the trust boundary."""
    checked = studio.data_file(path)
    return {"path": str(checked), "name": Path(checked).name}


def with_oos_examples(studio: Studio, source: dict | None, path: str | None, owner: str | None) -> tuple[dict, str]:
    """The loaded training data with a visitor's file of out-of-scope example messages beside it (none:
    without), and what it adds, in words."""
    if not source:
        raise AdapterError("Load the training data first, then its out-of-scope examples.")
    source = {k: v for k, v in source.items() if k not in ("oos_path", "oos_name")}
    if not path:
        return source, ""
    (checked,) = studio.uploaded([path])
    checked, messages = studio.oos_file(checked, owner)
    source.update(oos_path=str(checked), oos_name=checked.name)
    return source, (
        f"**{md(checked.name)}**: {messages:,} out-of-scope messages. The router's run picks its out-of-scope "
        "score on them and reports what share it catches."
    )


def inspect_data(
    path: str | None,
    task: str,
    mapping: dict[str, str] | None = None,
    tokenizer=None,
    max_length: int = 128,
    max_bytes: int | None = MAX_BYTES,
    max_rows: int | None = None,
    sample_rows: int = 0,
) -> dict[str, Any]:
    """Preview, columns, detected mapping and the validation summary of a data file.

    With the base's tokenizer, the summary also gives token-length percentiles and truncations: from a
    random sample of `sample_rows` rows when the file has more (0: every row). A file over `max_bytes`
    or `max_rows` is refused before anything is validated or tokenised.
    """
    if not path:
        raise AdapterError("Upload a CSV, TSV or JSONL file, or pick a sample.")
    path = Path(path)
    frame = read_table(path, max_bytes, max_rows=max_rows)
    try:
        columns = detect_columns(frame, task, mapping, path.name)
    except AdapterError as e:  # readable, but its columns need picking: keep it so the visitor can map them
        return {
            "preview": frame.head(20),
            "columns": list(frame.columns),
            "mapping": getattr(e, "found", {}),  # what was found (a `text` column) is picked already
            "summary": f"**Pick the columns:** {md(studio_words(str(e)))}",
            "labels": [],
            "rows": len(frame),
            "label_chart": None,
            "length_chart": None,
            "tokens": None,
            "ready": False,
        }
    data = validate(frame, task, columns, path.name)
    lengths, token_stats = None, None
    if tokenizer is not None:
        rows = data.frame
        if sample_rows and len(rows) > sample_rows:  # a bounded sample tells the lengths as well as the whole
            rows = rows.sample(n=sample_rows, random_state=0)
        ds = tokenize(rows, task, tokenizer, max_length, data.labels)
        describe_lengths(data.summary, ds, max_length)
        tokens = list(ds["length"])  # as training cuts them: what the time and memory estimates need
        token_stats = {"mean": sum(tokens) / max(len(tokens), 1), "longest": max(tokens, default=0)}
        if len(rows) < len(data.frame):
            data.summary.warnings.append(
                f"Token lengths are from a random sample of {len(rows):,} of the {len(data.frame):,} rows."
            )
        # Lengths past the cut too, for the histogram; capped so one huge row costs little.
        lengths = list(tokenize(rows, task, tokenizer, max(4 * max_length, 512), data.labels)["length"])
    return {
        "preview": frame.head(20),
        "columns": list(frame.columns),
        "mapping": columns,
        "tokens": token_example(data.frame, tokenizer, max_length) if task == "instruction" and tokenizer else None,
        "summary": "  \n".join(md(line) for line in data.summary.lines()),
        "labels": data.labels or [],
        "rows": data.summary.rows_used,
        "label_chart": charts.label_counts(data.summary.label_counts) if data.summary.label_counts else None,
        "length_chart": charts.token_lengths(lengths, max_length) if lengths is not None else None,
        "token_stats": token_stats,
        "ready": True,
    }


# The token view's categories (adapter_core.engine.token_roles) in plain words, and their colours.
TOKEN_LEGEND = {
    "template": "chat template (the model reads it)",
    "prompt": "what the model reads",
    "loss": "what it learns to write (carries the loss)",
    "cut": "cut by max length",
}
TOKEN_COLORS = {
    TOKEN_LEGEND["template"]: "#d1d5db",
    TOKEN_LEGEND["prompt"]: "#93c5fd",
    TOKEN_LEGEND["loss"]: "#86efac",
    TOKEN_LEGEND["cut"]: "#fca5a5",
}
MAX_CUT_SHOWN = 200  # tokens of a long example's cut tail shown one by one; the rest as one count


def token_example(frame, tokenizer, max_length: int, row: int = 0) -> list[tuple[str, str]]:
    """Row `row` of validated instruction data as training sees it, token by token: (text, what it is)
    for `gr.HighlightedText`. The categories come from the training code's own example builder."""
    if not len(frame):
        return []
    example = frame.iloc[min(max(int(row), 0), len(frame) - 1)]
    optional = lambda key: example[key] if key in frame.columns and isinstance(example[key], str) else None  # noqa: E731
    tokens = token_view(
        tokenizer, example["instruction"], example["response"], max_length, optional("system"), optional("input")
    )
    cut = [t for t in tokens if t[1] == "cut"]
    shown = [(text, TOKEN_LEGEND[kind]) for text, kind in tokens[: len(tokens) - len(cut) + MAX_CUT_SHOWN]]
    if len(cut) > MAX_CUT_SHOWN:
        shown.append((f" … {len(cut) - MAX_CUT_SHOWN} more tokens", TOKEN_LEGEND["cut"]))
    return shown


def base_for_task(studio: Studio, base: str, task: str) -> tuple[str, str]:
    """A base that can learn `task`: `base` if it can, else the first allowed catalog model that can,
    with a note saying so (MiniLM, an encoder, cannot generate answers)."""
    if task in studio.model_info(base).tasks:
        return base, ""
    for name in model_choices(studio):
        entry = CATALOG.get(name)
        if entry and task in entry.tasks:
            return name, f"{name} is selected as the base model: {base} cannot learn {task} tasks."
    return base, ""


def describe_data(
    studio: Studio, source: dict | None, task: str, mapping: dict[str, str], base: str, max_length: int
) -> dict[str, Any]:
    """`inspect_data` on a source this caller may read, with the chosen base's tokenizer."""
    if not source:
        raise AdapterError("Upload a CSV, TSV or JSONL file, or pick a sample.")
    if task not in REQUIRED:
        raise AdapterError("Task must be classification or instruction.")
    path = studio.data_file(source.get("path"))
    policy = studio.policy
    return inspect_data(
        str(path),
        task,
        mapping,
        studio.base(base).tokenizer,
        int(max_length),
        max_bytes=studio.data_bytes_limit(path),
        max_rows=policy.max_data_rows,
        sample_rows=policy.sample_rows if policy.public else 0,
    )


def detected_fields(task: str) -> list[str]:
    return list(REQUIRED[task] + OPTIONAL[task])
