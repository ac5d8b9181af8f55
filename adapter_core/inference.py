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
from .inject import HEADS_ATTR, get_record
from .selection import thread_with_context, use_adapter


def classification_logits(
    model: nn.Module, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Logits of classification adapter `name` (gradients flow; wrap in no_grad to serve)."""
    record = get_record(model, name)
    if record.task != "classification":
        raise AdapterError(f"Adapter {name!r} is an {record.task} adapter; classify needs a classification adapter.")
    head = getattr(model, HEADS_ATTR)[name]
    with use_adapter(model, name):
        hidden = backbone_hidden(model, input_ids, attention_mask)
    pooled = pool(hidden, attention_mask, record.pooling)
    return head(pooled.to(head.weight.dtype))


@dataclass
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


@torch.no_grad()
def classify(
    model: nn.Module, tokenizer, texts: Sequence[str], name: str, max_length: int = 128, batch_size: int = 64
) -> list[Prediction]:
    """Label each text with classification adapter `name`."""
    labels = get_record(model, name).labels
    device = next(model.parameters()).device
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        probs = classification_logits(model, name, batch["input_ids"], batch["attention_mask"]).float().softmax(-1)
        for row in probs.tolist():
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
    if name is not None and get_record(model, name).task != "instruction":
        raise AdapterError(f"Adapter {name!r} is a classification adapter; chat needs an instruction adapter.")
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
