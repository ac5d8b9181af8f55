"""From validated rows to padded batches: tokenisation, response-only labels, length-grouped batching."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import torch
from datasets import Dataset

from ..inference import format_prompt

IGNORE = -100  # label of tokens that carry no loss (prompt and padding)


def tokenize(frame: pd.DataFrame, task: str, tokenizer, max_length: int, labels: list[str] | None) -> Dataset:
    """A `datasets.Dataset` with input_ids, labels and length, ready for `collate`."""
    ds = Dataset.from_pandas(frame, preserve_index=False)
    if task == "classification":
        index = {label: i for i, label in enumerate(labels)}

        def encode(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
            return {
                "input_ids": enc["input_ids"],
                "labels": [index[label] for label in batch["label"]],
                "length": [len(x) for x in enc["input_ids"]],
            }

    else:

        def encode(batch):
            out = {"input_ids": [], "labels": [], "length": [], "response_tokens": []}
            for i in range(len(batch["instruction"])):
                ids, lab = instruction_example(
                    tokenizer,
                    batch["instruction"][i],
                    batch["response"][i],
                    batch["input"][i] if "input" in batch else None,
                    batch["system"][i] if "system" in batch else None,
                    max_length,
                )
                out["input_ids"].append(ids)
                out["labels"].append(lab)
                out["length"].append(len(ids))
                # Tokens that carry loss: each label is predicted from the token before it.
                out["response_tokens"].append(sum(t != IGNORE for t in lab[1:]))
            return out

    # A fingerprint of our own: datasets would otherwise pickle the tokenizer to hash `encode` (about a
    # second per call), only to name a cache file that an in-memory dataset never writes.
    return ds.map(encode, batched=True, remove_columns=ds.column_names, new_fingerprint=uuid.uuid4().hex)


def drop_unanswered(ds: Dataset) -> Dataset:
    """Instruction examples whose prompt fills max_length leave no response token to learn from, and a
    batch of only those would make the loss 0/0. `describe_lengths` reports how many there are."""
    if "response_tokens" not in ds.column_names:
        return ds
    keep = [i for i, n in enumerate(ds["response_tokens"]) if n > 0]
    return ds if len(keep) == len(ds) else ds.select(keep)


def instruction_text(instruction: str, extra_input: str | None) -> str:
    return f"{instruction}\n\n{extra_input}" if extra_input else instruction


def instruction_example(
    tokenizer, instruction: str, response: str, extra_input: str | None, system: str | None, max_length: int
) -> tuple[list[int], list[int]]:
    """Token ids of prompt + response, and labels that are IGNORE on every prompt token.

    The loss covers the response and the end-of-turn marker, so the adapter learns where to stop.
    """
    prompt = format_prompt(tokenizer, instruction_text(instruction, extra_input), system or None)
    answer = response_text(tokenizer, prompt, instruction_text(instruction, extra_input), response, system or None)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    ids = (p_ids + a_ids)[:max_length]
    labels = ([IGNORE] * len(p_ids) + a_ids)[:max_length]
    return ids, labels


def response_text(tokenizer, prompt: str, instruction: str, response: str, system: str | None) -> str:
    """The text that follows the prompt in a full conversation: the response and its end-of-turn."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": instruction},
            {"role": "assistant", "content": response},
        ]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if full.startswith(prompt):
            return full[len(prompt) :]
    return response + (tokenizer.eos_token or "")


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example of this batch only (dynamic padding)."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    seq_labels = isinstance(features[0]["labels"], list)
    labels = (
        torch.full((len(features), width), IGNORE, dtype=torch.long)
        if seq_labels
        else torch.tensor([f["labels"] for f in features], dtype=torch.long)
    )
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        if seq_labels:
            labels[i, :n] = torch.tensor(f["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Shuffled batches of similar length: sort within random windows of 50 batches, shuffle batch order.

    Cuts padding (and so CPU time) several-fold on short, varied texts, while keeping the randomness
    SGD needs. The epoch must be set before each pass so every epoch (and every DDP rank) agrees.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, window: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.window):
            chunk = order[start : start + self.window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)
