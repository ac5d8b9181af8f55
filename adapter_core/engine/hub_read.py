"""A Hub dataset's split, read from the Hugging Face cache by `datasets` (parquet, CSV, TSV, JSON: the
formats it reads without running code) into the table of strings the data layer validates: a class label
as its name, a number as its text, a list or a mapping as JSON."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .data import DataError, check_rows
from .hub_files import BUILDERS, suffix

TOO_MANY = "Pick a smaller split or dataset, or run the studio on your own machine."


def read_files(snapshot: Path, files: list[str], label: str, max_rows: int | None = None) -> pd.DataFrame:
    """One split's files (paths in `snapshot`) as a table of strings; `label` names it in messages. A split
    of more than `max_rows` rows is refused from what its files say of their rows, before it is read: a
    small parquet file can hold millions of rows."""
    from datasets import load_dataset

    kinds = {suffix(f) for f in files}
    if len({BUILDERS[k] for k in kinds}) != 1:
        raise DataError(f"{label} mixes file types ({', '.join(sorted(kinds))}); datasets reads one at a time.")
    missing = [f for f in files if not (snapshot / f).is_file()]
    if missing:
        raise DataError(f"{label}: {missing[0]} is not in the local Hugging Face cache; load it with a connection.")
    kind = kinds.pop()
    paths = [snapshot / f for f in files]
    if max_rows is not None:
        check_rows(label, count_rows(paths, kind, max_rows), max_rows, TOO_MANY)
    extra = {"sep": "\t"} if kind == ".tsv" else {}
    # A cache of its own, gone after the read: the split is kept as the studio's data file, not twice.
    with tempfile.TemporaryDirectory(prefix="hub-read-") as cache:
        try:
            ds = load_dataset(
                BUILDERS[kind], data_files=[str(p) for p in paths], split="train", cache_dir=cache, **extra
            )
        except Exception as e:  # a damaged or odd file: said without the server's paths
            why = re.sub(r"(/[^\s'\"]+)+", "…", str(e).splitlines()[0] if str(e) else "")[:200]
            raise DataError(f"{label} could not be read ({type(e).__name__}: {why}).") from None
        if len(ds) == 0:
            raise DataError(f"{label} has no rows.")
        check_rows(label, len(ds), max_rows, TOO_MANY)  # a JSON document's rows, counted only now
        return _strings(ds)


def count_rows(paths: list[Path], kind: str, at_most: int) -> int:
    """The rows of a split's files, counted without holding them, up to just over `at_most`: a parquet
    file's footer, a CSV's records streamed in blocks, a JSON Lines file's lines. A JSON document, and a
    damaged file, count 0 here: the row check after the read covers them (a document's bytes are bounded
    before the download)."""
    rows = 0
    for path in paths:
        try:
            rows += _file_rows(path, kind, at_most - rows)
        except Exception:  # a damaged file: `load_dataset` says what is wrong with it
            continue
        if rows > at_most:
            break
    return rows


def _file_rows(path: Path, kind: str, at_most: int) -> int:
    if kind == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if kind in (".csv", ".tsv"):
        import pyarrow.csv as pv

        options = pv.ParseOptions(delimiter="\t" if kind == ".tsv" else ",", newlines_in_values=True)
        rows = 0
        for batch in pv.open_csv(path, parse_options=options):
            rows += batch.num_rows
            if rows > at_most:
                break
        return rows
    if kind == ".jsonl":
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    return 0


def _strings(ds) -> pd.DataFrame:
    from datasets import ClassLabel

    frame = ds.to_pandas()
    for name, feature in ds.features.items():
        if isinstance(feature, ClassLabel):
            frame[name] = [feature.int2str(int(v)) if _present(v) and int(v) >= 0 else "" for v in frame[name]]
        else:
            frame[name] = [_text(v) for v in frame[name]]
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    if not _present(value):
        return ""
    if isinstance(value, str):
        return value
    value = value.tolist() if hasattr(value, "tolist") else value
    return str(value) if isinstance(value, (bool, int, float)) else json.dumps(value, default=str, ensure_ascii=False)
