"""Read a CSV, TSV or JSONL file, find its columns, validate it, and summarise it.

Every problem a user can cause raises `DataError` with a message that names the file, the column or
the row, and says how to fix it. Row numbers are file lines, the header being line 1.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset

from ..errors import AdapterError

MAX_BYTES = 50 * 1024 * 1024
FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}

# Canonical column -> names it goes by in the wild, best first.
ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("text", "sentence", "utterance", "query", "message", "content", "review", "document", "input_text"),
    "label": ("label", "labels", "category", "class", "intent", "target", "department", "y"),
    "instruction": ("instruction", "prompt", "question", "request", "user", "query"),
    "response": ("response", "output", "answer", "completion", "reply", "assistant", "target"),
    "input": ("input", "context"),
    "system": ("system", "system_prompt"),
}
REQUIRED = {"classification": ("text", "label"), "instruction": ("instruction", "response")}
OPTIONAL = {"classification": (), "instruction": ("input", "system")}


class DataError(AdapterError):
    """A problem with the user's data file; the message says what and where. `found`: the columns already
    mapped when a mapping was incomplete (the studio pre-fills its pickers with them)."""

    def __init__(self, message: str, found: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.found = dict(found or {})


@dataclass
class DataSummary:
    file: str
    task: str
    columns: dict[str, str]  # canonical -> column in the file
    rows_total: int
    rows_used: int
    dropped_blank: int = 0
    dropped_duplicates: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    token_percentiles: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    max_length: int | None = None
    warnings: list[str] = field(default_factory=list)
    source: str | None = None  # a Hub dataset's reference at the commit read (hf://datasets/OWNER/NAME@COMMIT)

    def lines(self) -> list[str]:
        """The summary in words, as the CLI and the studio show it."""
        out = [
            f"{self.file}: {self.rows_used} of {self.rows_total} rows used "
            f"({self.dropped_blank} with blank cells dropped, {self.dropped_duplicates} duplicates dropped)."
        ]
        if self.source:
            out.append(f"Read from {self.source}.")
        if self.label_counts:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.label_counts.items(), key=lambda kv: -kv[1]))
            out.append(f"{len(self.label_counts)} labels - {counts}.")
        if self.token_percentiles:
            p = self.token_percentiles
            out.append(
                f"Tokens per example: median {p['p50']}, p90 {p['p90']}, p99 {p['p99']}, max {p['max']}; "
                f"{self.truncated} longer than max length {self.max_length} will be truncated."
            )
        return out + self.warnings


@dataclass
class TaskData:
    task: str
    frame: pd.DataFrame  # canonical columns only
    labels: list[str] | None
    summary: DataSummary


def load_data(
    path: str | os.PathLike,
    task: str,
    columns: dict[str, str] | None = None,
    max_bytes: int | None = MAX_BYTES,
    display_name: str | None = None,
    max_rows: int | None = None,
) -> TaskData:
    """Read and validate a training file for `task`; `columns` maps canonical names to file columns.
    A file over `max_bytes` (None: no byte cap), or over `max_rows` rows, is refused before any row is
    validated."""
    if task not in REQUIRED:
        raise DataError(f"task must be classification or instruction; got {task!r}.")
    path = Path(path)
    name = display_name or path.name
    frame = read_table(path, max_bytes, name, max_rows)
    mapping = detect_columns(frame, task, columns, name)
    return validate(frame, task, mapping, name)


def read_table(
    path: Path, max_bytes: int | None = MAX_BYTES, name: str | None = None, max_rows: int | None = None
) -> pd.DataFrame:
    """The file as a DataFrame of strings, with clear errors for every way a file can be unreadable, and
    for a file over `max_bytes` (None: no byte cap) or (when given) `max_rows` rows."""
    name = name or path.name
    if not path.is_file():
        raise DataError(f"{name}: no such file.")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{name}: unsupported file type {suffix or '(none)'!r}. Use .csv, .tsv or .jsonl.")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DataError(
            f"{name} is {_human(size)}, over the {_human(max_bytes)} limit. "
            "Use a smaller sample of it (a few thousand rows are plenty for an adapter)."
        )
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{name} is empty. It needs a header row and at least a few rows of data.")
    if b"\x00" in raw[:8192]:
        raise DataError(
            f"{name} looks like a binary file (it contains NUL bytes), not text. "
            "Export it as CSV, TSV or JSONL text (from Excel: Save As > CSV UTF-8)."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{name} is not UTF-8 text: byte 0x{raw[e.start]:02x} on line {line} cannot be read. "
            "Save the file as UTF-8 (from Excel: Save As > CSV UTF-8) and upload it again."
        ) from None
    text = text.replace("\r\n", "\n")
    # A lone \r is a line break only in old Mac files (no \n at all); elsewhere it is a stray character.
    text = text.replace("\r", "\n") if "\n" not in text else text.replace("\r", "")
    try:
        if FORMATS[suffix] is None:
            frame = _read_jsonl(text, name)
        else:
            frame = pd.read_csv(
                io.StringIO(text), sep=FORMATS[suffix], dtype=str, keep_default_na=False, skip_blank_lines=True
            )
    except pd.errors.ParserError as e:
        raise DataError(
            f"{name} could not be parsed as {suffix[1:].upper()}: {e}. Check quoting on that line."
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty. It needs a header row and at least a few rows of data.") from None
    frame.columns = [str(c).replace("\ufeff", "").strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{name} has a header ({', '.join(frame.columns)}) but no rows of data.")
    check_rows(name, len(frame), max_rows)
    return frame


def check_rows(
    name: str,
    rows: int,
    max_rows: int | None,
    advice: str = "Use a smaller sample of it (a few thousand rows are plenty for an adapter).",
) -> None:
    """Refuse a table of more than `max_rows` rows (None: no cap), in words."""
    if max_rows is not None and rows > max_rows:
        raise DataError(f"{name} has {rows:,} rows; this studio reads at most {max_rows:,}. {advice}")


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def _read_jsonl(text: str, name: str) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{name}, line {number}: not valid JSON ({e.msg}). Each line must be one JSON object."
            ) from None
        if not isinstance(row, dict):
            raise DataError(f'{name}, line {number}: expected a JSON object like {{"text": ..., "label": ...}}.')
        rows.append({k: "" if v is None else str(v) for k, v in row.items()})
    if not rows:
        raise DataError(f"{name} is empty. It needs at least a few JSON lines.")
    return pd.DataFrame(rows, dtype=str).fillna("")


def detect_columns(frame: pd.DataFrame, task: str, columns: dict[str, str] | None, name: str) -> dict[str, str]:
    """Map canonical columns to the file's, by explicit mapping first, then by name and alias."""
    columns = {k: v for k, v in (columns or {}).items() if v}
    have = list(frame.columns)
    lower = {c.lower(): c for c in have}
    mapping: dict[str, str] = {}
    for canon, col in columns.items():
        if col not in have:
            raise DataError(f"{name} has no column {col!r} (mapped as {canon}). Columns found: {', '.join(have)}.")
        mapping[canon] = col
    wanted = REQUIRED[task] + OPTIONAL[task]
    taken = set(mapping.values())
    for canon in wanted:
        if canon in mapping:
            continue
        hits = [lower[a] for a in ALIASES[canon] if a in lower and lower[a] not in taken]
        if len(hits) > 1 and canon in REQUIRED[task] and hits[0].lower() != canon:
            raise DataError(
                f"{name}: columns {', '.join(repr(h) for h in hits)} could each be the {canon} column. "
                f"Choose one by mapping {canon} explicitly (--{canon}-column in the CLI, the dropdown in the studio)."
            )
        if hits:
            mapping[canon] = hits[0]
            taken.add(hits[0])
    missing = [c for c in REQUIRED[task] if c not in mapping]
    if missing:
        known = {a for c in wanted for a in ALIASES[c]}
        if not any(c.lower() in known for c in have):
            raise DataError(
                f"{name} seems to have no header row: its first line ({', '.join(repr(c) for c in have[:3])}) "
                f"names none of the expected columns. Add a first line such as "
                f"'{','.join(REQUIRED[task])}', or map the columns explicitly."
            )
        first = missing[0]
        raise DataError(
            f"{name} has no {first} column. Columns found: {', '.join(have)}. Rename one to '{first}' "
            f"(or {', '.join(ALIASES[first][1:4])}), or map it explicitly (--{first}-column in the CLI, the dropdown in the studio).",
            found=mapping,
        )
    return mapping


def validate(frame: pd.DataFrame, task: str, mapping: dict[str, str], name: str) -> TaskData:
    data = pd.DataFrame({canon: frame[col].astype(str).str.strip() for canon, col in mapping.items()})
    data.index = frame.index + 2  # file line numbers: header is line 1
    total = len(data)
    required = list(REQUIRED[task])
    blank = (data[required] == "") | data[required].isin(["nan", "NaN", "None", "null"])
    blank_rows = blank.any(axis=1)
    warnings = []
    if blank_rows.any():
        lines = [int(i) for i in data.index[blank_rows][:5]]
        warnings.append(
            f"Dropped {int(blank_rows.sum())} rows with a blank {' or '.join(required)} (lines {lines}...)."
        )
    data = data[~blank_rows]
    dup = data.duplicated(keep="first")
    if dup.any():
        warnings.append(
            f"Dropped {int(dup.sum())} duplicate rows (first at line {int(data.index[dup][0])}); "
            "duplicates would leak between training and validation."
        )
    data = data[~dup]
    if len(data) == 0:
        raise DataError(f"{name}: every row has a blank {' or '.join(required)} cell, so nothing is left to train on.")
    summary = DataSummary(
        file=name,
        task=task,
        columns=mapping,
        rows_total=total,
        rows_used=len(data),
        dropped_blank=int(blank_rows.sum()),
        dropped_duplicates=int(dup.sum()),
        warnings=warnings,
    )
    labels = None
    if task == "classification":
        counts = data["label"].value_counts()
        if len(counts) < 2:
            raise DataError(
                f"{name}: column {mapping['label']!r} has only one label ({counts.index[0]!r}). "
                "A classifier needs examples of at least two labels."
            )
        single = sorted(counts[counts == 1].index)
        if single:
            warnings.append(
                f"Labels with a single example: {', '.join(map(repr, single[:10]))}. They stay in training "
                "but cannot be validated; add more examples of them."
            )
        summary.label_counts = {str(k): int(v) for k, v in counts.items()}
        labels = sorted(summary.label_counts)
    return TaskData(task, data.reset_index(names="line"), labels, summary)


def split(data: TaskData, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a validation split, stratified by label for classification."""
    rng = np.random.default_rng(seed)
    frame = data.frame
    if data.task == "classification":
        val_idx = []
        for _, rows in frame.groupby("label").groups.items():
            rows = np.array(rows)
            rng.shuffle(rows)
            k = int(round(len(rows) * val_fraction)) if len(rows) > 1 else 0
            val_idx.extend(rows[: min(k, len(rows) - 1)])
        val_mask = frame.index.isin(val_idx)
    else:
        order = rng.permutation(len(frame))
        val_mask = np.zeros(len(frame), dtype=bool)
        val_mask[order[: max(1, int(round(len(frame) * val_fraction)))]] = True
    train, val = frame[~val_mask], frame[val_mask]
    if len(val) == 0 or len(train) == 0:
        raise DataError(
            f"{data.summary.file}: {len(frame)} rows are too few to hold out a validation split "
            f"of {val_fraction:.0%}. Add rows, or give a separate validation file."
        )
    return train.reset_index(drop=True), val.reset_index(drop=True)


def describe_lengths(summary: DataSummary, ds: Dataset, max_length: int) -> None:
    """Token-length percentiles, how many examples reach max_length (and so are cut), and how many
    instruction examples are cut before their response begins, into `summary`."""
    arr = np.asarray(ds["length"])
    summary.token_percentiles = {
        "p50": int(np.percentile(arr, 50)),
        "p90": int(np.percentile(arr, 90)),
        "p99": int(np.percentile(arr, 99)),
        "max": int(arr.max()),
    }
    summary.truncated = int((arr >= max_length).sum())
    summary.max_length = max_length
    if "response_tokens" in ds.column_names:
        unanswered = sum(n == 0 for n in ds["response_tokens"])
        if unanswered:
            summary.warnings.append(
                f"{unanswered} of {len(arr)} examples have a prompt of {max_length} tokens or more, so no "
                "response token is left to learn from; they are left out. Raise max length or shorten "
                "those prompts."
            )
