"""Using a saved adapter: load it with its base, then evaluate a file, predict, or chat."""

from __future__ import annotations

from pathlib import Path

from ..catalog import Base, load_base
from ..errors import AdapterError
from ..inject import get_record
from ..io import load_adapter, read_adapter_config
from .batches import tokenize
from .data import load_data
from .metrics import evaluate


def adapter_path(path: str | Path) -> Path:
    """An adapter folder, or a run folder holding one in `adapter/`."""
    path = Path(path)
    if (path / "adapter" / "adapter_config.json").is_file():
        return path / "adapter"
    return path


def load_with_base(path: str | Path, base: Base | None = None) -> tuple[Base, str]:
    """Load the adapter at `path` onto `base`, or onto a fresh copy of the base it was trained on."""
    path = adapter_path(path)
    meta = read_adapter_config(path)
    if base is None:
        base = load_base(meta.get("base_model") or meta["base"]["name_or_path"])
    return base, load_adapter(base.model, path)


def evaluate_file(
    base: Base, name: str, data_path: str | Path, max_length: int = 128, columns: dict[str, str] | None = None
) -> dict[str, float]:
    """Metrics of adapter `name` on a labelled file: accuracy and macro-F1, or loss and perplexity."""
    record = get_record(base.model, name)
    data = load_data(data_path, record.task, columns)
    if record.task == "classification":
        unknown = sorted(set(data.labels) - set(record.labels))
        if unknown:
            raise AdapterError(
                f"{Path(data_path).name} has labels this adapter was not trained on: {unknown[:10]}. "
                f"It knows: {record.labels[:20]}."
            )
    ds = tokenize(data.frame, record.task, base.tokenizer, max_length, record.labels)
    metrics = evaluate(
        base.model, name, record.task, ds, base.tokenizer.pad_token_id, num_labels=len(record.labels or [])
    )
    return {**metrics, "rows": len(ds)}
