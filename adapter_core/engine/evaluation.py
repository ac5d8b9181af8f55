"""Using a saved adapter: load it with its base, then evaluate a file, predict, or chat."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..catalog import Base, load_base
from ..errors import AdapterError
from ..inject import get_record
from ..io import adapter_path, load_adapter, read_adapter_config
from ..schema import base_name
from ..state import AdapterRecord
from .batches import tokenize
from .calibration import ood_metrics, predictions
from .data import TaskData, load_data
from .metrics import evaluate
from .report import report_from


def load_with_base(path: str | Path, base: Base | None = None) -> tuple[Base, str]:
    """Load the adapter at `path` onto `base`, or onto a fresh copy of the base it was trained on."""
    path = adapter_path(path)
    meta = read_adapter_config(path)
    if base is None:
        base = load_base(base_name(meta))
    return base, load_adapter(base.model, path)


def evaluate_file(
    base: Base,
    name: str,
    data_path: str | Path,
    max_length: int = 128,
    columns: dict[str, str] | None = None,
    max_rows: int | None = None,
    oos_label: str | None = None,
) -> dict[str, Any]:
    """Metrics of adapter `name` on a labelled file: accuracy and macro-F1, or loss and perplexity, with
    the number of rows; for classification also `report`, the per-class evaluation
    (`report.classification_report`: per-class metrics, confusion matrix, the misclassified rows).
    A file over `max_rows` rows is refused before anything is tokenised.

    With `oos_label`, the file's rows of that label are out-of-scope queries: the metrics above cover the
    other rows, and `out_of_scope` says how the router's saved decision separates the two
    (`calibration.ood_metrics`)."""
    record = get_record(base.model, name)
    data = load_data(data_path, record.task, columns, max_rows=max_rows)
    oos_frame = None
    if oos_label is not None:
        oos_frame, data = _split_out_of_scope(data, record, oos_label, Path(data_path).name)
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
    out = {**metrics, "rows": len(ds), "report": report}
    if oos_frame is not None:
        oos_ds = tokenize(
            oos_frame.assign(label=record.labels[0]), "classification", base.tokenizer, max_length, record.labels
        )
        d = record.detector
        out["out_of_scope"] = ood_metrics(
            d.score, d.threshold, d.stats, p, predictions(base.model, name, oos_ds, pad_id)
        )
    return out


def _split_out_of_scope(data: TaskData, record: AdapterRecord, oos_label: str, source: str):
    """(the out-of-scope rows, the in-scope data) of a classification file."""
    if record.task != "classification":
        raise AdapterError("Out-of-scope rows (oos_label) belong to a classification adapter's evaluation.")
    if record.detector is None:
        raise AdapterError(
            f"Adapter {record.name!r} has no out-of-scope decision to evaluate (it was saved without one); "
            "train it again to calibrate one."
        )
    if oos_label in record.labels:
        raise AdapterError(f"{oos_label!r} is one of the adapter's own labels; name the label of out-of-scope rows.")
    is_oos = data.frame["label"] == oos_label
    if not is_oos.any() or is_oos.all():
        which = "no" if not is_oos.any() else "only"
        raise AdapterError(
            f"{source} has {which} rows labelled {oos_label!r}; it needs both in-scope and out-of-scope rows."
        )
    kept = data.frame[~is_oos]
    return data.frame[is_oos], replace(data, frame=kept, labels=sorted(set(kept["label"])))
