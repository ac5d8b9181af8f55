"""Using a saved adapter: load it with its base, then evaluate a file, predict, or chat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..catalog import Base, load_base
from ..errors import AdapterError
from ..inject import get_record
from ..io import adapter_path, load_adapter, read_adapter_config
from .batches import tokenize
from .calibration import predictions
from .data import load_data
from .metrics import evaluate
from .report import report_from


def load_with_base(path: str | Path, base: Base | None = None) -> tuple[Base, str]:
    """Load the adapter at `path` onto `base`, or onto a fresh copy of the base it was trained on."""
    path = adapter_path(path)
    meta = read_adapter_config(path)
    if base is None:
        base = load_base(meta.get("base_model") or meta["base"]["name_or_path"])
    return base, load_adapter(base.model, path)


def evaluate_file(
    base: Base,
    name: str,
    data_path: str | Path,
    max_length: int = 128,
    columns: dict[str, str] | None = None,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Metrics of adapter `name` on a labelled file: accuracy and macro-F1, or loss and perplexity, with
    the number of rows; for classification also `report`, the per-class evaluation
    (`report.classification_report`: per-class metrics, confusion matrix, the misclassified rows).
    A file over `max_rows` rows is refused before anything is tokenised."""
    record = get_record(base.model, name)
    data = load_data(data_path, record.task, columns, max_rows=max_rows)
    if record.task == "classification":
        unknown = sorted(set(data.labels) - set(record.labels))
        if unknown:
            raise AdapterError(
                f"{Path(data_path).name} has labels this adapter was not trained on: {unknown[:10]}. "
                f"It knows: {record.labels[:20]}."
            )
    ds = tokenize(data.frame, record.task, base.tokenizer, max_length, record.labels)
    pad_id = base.tokenizer.pad_token_id
    if record.task != "classification":
        return {**evaluate(base.model, name, record.task, ds, pad_id), "rows": len(ds)}
    # One pass gives the metrics `evaluate` would and the per-class report (a test file may be large).
    p = predictions(base.model, name, ds, pad_id)
    report = report_from(p, list(data.frame["text"]), record.labels)
    metrics = {
        "val_loss": sum(p.loss) / max(len(p.loss), 1),
        "accuracy": report["per_class"]["accuracy"],
        "macro_f1": report["per_class"]["macro"]["f1"],
    }
    return {**metrics, "rows": len(ds), "report": report}
