"""A run's inputs, read and checked: the training and validation rows, the adapter that `init_from` names,
and both splits tokenized (the setup phase's first half, see recipe.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset, concatenate_datasets

from ..errors import AdapterError
from ..io import adapter_path, read_adapter_config
from .batches import drop_unanswered, tokenize
from .config import Event, TrainConfig
from .data import DataError, TaskData, describe_lengths, load_data, split
from .hub_data import is_hub_data, load_hub_data


def read_data(config: TrainConfig) -> tuple[TaskData, pd.DataFrame, pd.DataFrame]:
    """The training rows, and the (training, validation) rows: the validation file's, a Hub dataset's own
    validation split, or a held-out share."""
    val = None
    if is_hub_data(config.data):
        data, val = load_hub_data(
            config.data, config.task, config.columns, config.data_config, config.data_split,
            validation=not config.val_data,
        )  # fmt: skip
    else:
        data = load_data(config.data, config.task, config.columns)
    if config.val_data:
        val = load_data(config.val_data, config.task, config.columns)
    if val is None:
        return (data, *split(data, config.val_fraction, config.seed))
    if data.labels is not None:
        unknown = sorted(set(val.labels) - set(data.labels))
        if unknown:
            raise DataError(f"{val.summary.file} has labels missing from the training file: {unknown[:10]}.")
    return data, data.frame, val.frame


def init_source(config: TrainConfig, data: TaskData) -> dict[str, Any] | None:
    """The saved adapter that `init_from` names (its metadata, with `path`), checked against the new data."""
    if not config.init_from:
        return None
    path = adapter_path(config.init_from)
    label = Path(config.init_from).name  # as the user named it: a run folder or the adapter folder in it
    meta = read_adapter_config(path)
    if meta["task"] != config.task:
        raise AdapterError(
            f"init_from {label!r} is a {meta['task']} adapter; this run trains {config.task}. "
            "Continue an adapter of the same task."
        )
    if data.labels is not None:
        unknown = sorted(set(data.labels) - set(meta["labels"] or []))
        if unknown:
            raise AdapterError(
                f"{Path(config.data).name} has labels the adapter {label!r} was not trained on: {unknown[:10]}. "
                f"It knows: {(meta['labels'] or [])[:20]}. Continue training on data with those labels only, "
                "or train a new adapter."
            )
    return {**meta, "path": path, "label": label}


def tokenize_splits(config, data, train_df, val_df, tokenizer, labels, emit) -> tuple[Dataset, Dataset]:
    """Tokenized training and validation sets, with the data summary emitted (lengths included)."""
    train_ds = tokenize(train_df, config.task, tokenizer, config.max_length, labels)
    val_ds = tokenize(val_df, config.task, tokenizer, config.max_length, labels)
    describe_lengths(data.summary, concatenate_datasets([train_ds, val_ds]), config.max_length)
    emit(Event("data", message="\n".join(data.summary.lines()), info=asdict(data.summary)))
    train_ds, val_ds = drop_unanswered(train_ds), drop_unanswered(val_ds)
    if not len(train_ds) or not len(val_ds):
        raise DataError(
            f"No {'training' if not len(train_ds) else 'validation'} example has a response token within "
            f"max length {config.max_length}: every prompt fills it. Raise max length or shorten the prompts."
        )
    return train_ds, val_ds
