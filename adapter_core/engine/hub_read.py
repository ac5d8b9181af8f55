"""A Hub dataset's split, read from the Hugging Face cache by `datasets` (parquet, CSV, TSV, JSON: the
formats it reads without running code) into the table of strings the data layer validates: a class label
as its name, a number as its text, a list or a mapping as JSON."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from .data import DataError
from .hub_files import BUILDERS, suffix


def read_files(snapshot: Path, files: list[str], label: str) -> pd.DataFrame:
    """One split's files (paths in `snapshot`) as a table of strings; `label` names it in messages."""
    from datasets import load_dataset

    kinds = {suffix(f) for f in files}
    if len({BUILDERS[k] for k in kinds}) != 1:
        raise DataError(f"{label} mixes file types ({', '.join(sorted(kinds))}); datasets reads one at a time.")
    missing = [f for f in files if not (snapshot / f).is_file()]
    if missing:
        raise DataError(f"{label}: {missing[0]} is not in the local Hugging Face cache; load it with a connection.")
    extra = {"sep": "\t"} if kinds == {".tsv"} else {}
    try:
        ds = load_dataset(BUILDERS[kinds.pop()], data_files=[str(snapshot / f) for f in files], split="train", **extra)
    except Exception as e:  # a damaged or odd file: said without the server's paths
        why = re.sub(r"(/[^\s'\"]+)+", "…", str(e).splitlines()[0] if str(e) else "")[:200]
        raise DataError(f"{label} could not be read ({type(e).__name__}: {why}).") from None
    if len(ds) == 0:
        raise DataError(f"{label} has no rows.")
    return _strings(ds)


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
