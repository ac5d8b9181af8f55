"""Running a model through an adapter: classification, prompts, and (streamed) generation."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from .errors import AdapterError
from .heads import backbone_hidden, pool
from .inject import HEADS_ATTR, TASK_ADAPTER, AdapterRecord, get_record
from .selection import thread_with_context, use_adapter


def _require_task(model: nn.Module, name: str, task: str, use: str) -> AdapterRecord:
    """The record of adapter `name`, which `use` (classify, chat, generation) needs to be a `task` adapter."""
    record = get_record(model, name)
    if record.task != task:
        raise AdapterError(f"Adapter {name!r} is {TASK_ADAPTER[record.task]}; {use} needs {TASK_ADAPTER[task]}.")
    return record


def classification_logits(
    model: nn.Module, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Logits of classification adapter `name` (gradients flow; wrap in no_grad to serve)."""
    record = _require_task(model, name, "classification", "classify")
    with use_adapter(model, name):
        hidden = backbone_hidden(model, input_ids, attention_mask)
    return _head_logits(model, record, hidden, attention_mask)


def _head_logits(
    model: nn.Module, record: AdapterRecord, hidden: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The adapter's head over its pooling of the backbone's hidden states."""
    head = getattr(model, HEADS_ATTR)[record.name]
    return head(pool(hidden, attention_mask, record.pooling).to(head.weight.dtype))


@dataclass
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


@torch.no_grad()
def classify(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    name: str | Sequence[str],
    max_length: int = 128,
    batch_size: int = 64,
) -> list[Prediction]:
    """Label each text with classification adapter `name`, or `texts[i]` with `name[i]`.

    With a list of names, the adapters of a batch run together in one forward pass (a mixed batch);
    each row then goes through its own adapter's pooling and head.
    """
    names = [name] * len(texts) if isinstance(name, str) else list(name)
    if len(names) != len(texts):
        raise AdapterError(f"Got {len(texts)} texts but {len(names)} adapter names; give one name per text.")
    records = {n: _require_task(model, n, "classification", "classify") for n in set(names)}
    if not texts:
        return []
    device = next(model.parameters()).device
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        rows = names[start : start + batch_size]
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        mask = batch["attention_mask"]
        with use_adapter(model, rows):
            hidden = backbone_hidden(model, batch["input_ids"], mask)
        probs: list[list[float] | None] = [None] * len(rows)
        for n in dict.fromkeys(rows):
            idx = [i for i, r in enumerate(rows) if r == n]
            logits = _head_logits(model, records[n], hidden[idx], mask[idx])
            for i, p in zip(idx, logits.float().softmax(-1).tolist(), strict=True):
                probs[i] = p
        for n, row in zip(rows, probs, strict=True):
            labels = records[n].labels
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(labels[best], row[best], dict(zip(labels, row, strict=True))))
    return out


def format_prompt(tokenizer, instruction: str, system: str | None = None) -> str:
    """The text a model sees before its answer: the chat template when it has one, else a plain one."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": instruction}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system}\n\n" if system else ""
    return f"{head}### Instruction:\n{instruction}\n\n### Response:\n"


class _StopOnEvent(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


def stream_generate(
    model: nn.Module,
    tokenizer,
    instruction: str,
    name: str | None,
    max_new_tokens: int = 128,
    system: str | None = None,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """Yield the answer's text piece by piece. `generate` runs in a worker thread that carries the
    caller's adapter selection; setting `stop` ends generation after the current token."""
    if name is not None:
        _require_task(model, name, "instruction", "chat")
    prompt = format_prompt(tokenizer, instruction, system)
    device = next(model.parameters()).device
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
    stop = stop or threading.Event()
    kwargs = dict(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        streamer=streamer,
        stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
        pad_token_id=tokenizer.pad_token_id,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                model.generate(**kwargs)
        except BaseException as e:  # surfaced in the caller's thread below
            errors.append(e)
            streamer.end()

    with use_adapter(model, name):
        worker = thread_with_context(run)
    worker.start()
    try:
        yield from streamer
    finally:
        stop.set()
        worker.join()
    if errors:
        raise errors[0]


def generate(
    model: nn.Module,
    tokenizer,
    instruction: str,
    name: str | None,
    max_new_tokens: int = 128,
    system: str | None = None,
) -> str:
    """The whole answer of instruction adapter `name` (None: the base model), greedy."""
    return "".join(stream_generate(model, tokenizer, instruction, name, max_new_tokens, system))


@torch.no_grad()
def generate_batch(
    model: nn.Module,
    tokenizer,
    instructions: Sequence[str],
    names: str | None | Sequence[str | None],
    max_new_tokens: int = 128,
    system: str | None = None,
) -> list[str]:
    """Greedy answers to many instructions in one batched `generate`: `instructions[i]` goes through
    `names[i]` (an instruction adapter, or None for the base), so one pass serves several adapters."""
    names = [names] * len(instructions) if names is None or isinstance(names, str) else list(names)
    if len(names) != len(instructions):
        raise AdapterError(f"Got {len(instructions)} instructions but {len(names)} adapter names; give one per row.")
    for n in set(names) - {None}:
        _require_task(model, n, "instruction", "generation")
    if not instructions:
        return []
    prompts = [format_prompt(tokenizer, i, system) for i in instructions]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Left padding keeps every prompt's last token at the end, where generation continues.
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(
        device
    )
    with use_adapter(model, names):
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
