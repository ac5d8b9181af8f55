"""Generation for many requests at once: one batched `generate`, one row per request.

Each `Row` brings its own prompt, adapter (None: the bare base), token budget, sampling settings and
stop strings, and receives its text piece by piece through `on_text`. Rows of different adapters run
in one mixed-adapter forward pass per decoding step. A row ends on its own (end-of-turn token, a stop
string, its budget, or its `cancel` event) while the others go on; the call returns when all have.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria

from .selection import use_adapter

log = logging.getLogger("adapter_core")


@dataclass
class Row:
    prompt_ids: list[int]
    adapter: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: Sequence[str] = ()
    cancel: threading.Event = field(default_factory=threading.Event)
    on_text: Callable[[str], None] | None = None
    on_finish: Callable[[Row], None] | None = None  # called once the row ends, while others may go on
    # Filled in as the row generates.
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop", "length" or "cancelled"
    repeated: bool = False  # ended by the repetition guard
    _sent: int = 0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class RowSampling(LogitsProcessor):
    """Each row's own temperature and nucleus: greedy rows keep only their best token, so sampling
    picks it for certain, and sampled rows are scaled and cut to their top-p mass."""

    def __init__(self, rows: Sequence[Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(self.rows):
            if row.temperature <= 0:
                best = scores[i].argmax()
                out[i, best] = 0.0
                continue
            logits = scores[i] / row.temperature
            if row.top_p < 1.0:
                ordered, order = logits.sort(descending=True)
                mass = ordered.softmax(-1).cumsum(-1)
                cut = mass - ordered.softmax(-1) >= row.top_p  # keep the tokens needed to reach top_p
                ordered[cut] = float("-inf")
                logits = torch.full_like(logits, float("-inf")).scatter(0, order, ordered)
            out[i] = logits
        return out


class RowTracker(StoppingCriteria):
    """Called once per decoding step: hands each live row its newest token, sends the text that is
    safe to show, and says which rows are finished."""

    def __init__(self, rows: Sequence[Row], tokenizer, stop_ids: Sequence[int], guard=None):
        self.rows, self.tokenizer, self.stop_ids, self.guard = rows, tokenizer, set(stop_ids), guard

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        fired = self.guard(input_ids, scores).tolist() if self.guard is not None else [False] * len(self.rows)
        for i, (row, token) in enumerate(zip(self.rows, input_ids[:, -1].tolist(), strict=True)):
            if row.done:
                continue
            if token in self.stop_ids:
                finish(row, "stop")
                continue
            row.tokens.append(token)
            advance(row, self.tokenizer)
            if row.done:
                continue
            if fired[i]:
                row.repeated = True
                finish(row, "stop")
            elif row.cancel.is_set():
                finish(row, "cancelled")
            elif len(row.tokens) >= row.max_new_tokens:
                finish(row, "length")
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


def advance(row: Row, tokenizer) -> None:
    """Decode the row again and send what is new, holding back a possible start of a stop string or
    of a multi-byte character; a complete stop string ends the row, without it."""
    text = tokenizer.decode(row.tokens, skip_special_tokens=True)
    hits = [text.find(s, max(0, row._sent - len(s))) for s in row.stop if s]
    hits = [h for h in hits if h >= 0]
    if hits:
        row.text = text[: min(hits)]
        finish(row, "stop")
        return
    row.text = text
    held = max([_partial_stop(text, s) for s in row.stop if s] + [1 if text.endswith("\ufffd") else 0])
    _send(row, len(text) - held)


def _partial_stop(text: str, stop: str) -> int:
    """The length of the longest end of `text` that begins `stop`."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def _send(row: Row, upto: int) -> None:
    if upto > row._sent:
        piece, row._sent = row.text[row._sent : upto], upto
        if row.on_text is not None:
            try:
                row.on_text(piece)
            except Exception:  # its reader is gone: end this row, never the batch it shares
                log.warning("A row's reader failed; the row is cancelled", exc_info=True)
                row.cancel.set()


def finish(row: Row, reason: str) -> None:
    """End the row, send the rest of its text, and tell its `on_finish`."""
    row.finish_reason = reason
    _send(row, len(row.text))
    if row.on_finish is not None:
        try:
            row.on_finish(row)
        except Exception:  # a caller's bookkeeping must never end the batch
            log.exception("A row's end callback failed")


@torch.no_grad()
def generate_rows(model: nn.Module, tokenizer, rows: Sequence[Row], stop_ids: Sequence[int], guard=None) -> None:
    """Generate every row to its end in one batched `generate` with one adapter per row.

    `stop_ids` end a row (its end-of-turn and end-of-sequence tokens); `guard`, a `RepetitionGuard`,
    ends rows caught in a loop. On return every row has its `text` and `finish_reason`."""
    live = [r for r in rows if not _skip(r)]
    if not live:
        return
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Left padding keeps every prompt's last token at the end, where generation continues.
    width = max(len(r.prompt_ids) for r in live)
    ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in live], device=device)
    mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in live], device=device)
    sampled = any(r.temperature > 0 for r in live)
    # Sampling settings are per row (RowSampling); the shared ones must leave the scores alone.
    shared = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if sampled else dict(do_sample=False)
    config = GenerationConfig(
        max_new_tokens=max(r.max_new_tokens for r in live),
        pad_token_id=pad,
        eos_token_id=list(stop_ids) or None,
        **shared,
    )
    if guard is not None:
        guard.reset(width, stop_ids)
    with use_adapter(model, [r.adapter for r in live]):
        model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=config,
            logits_processor=LogitsProcessorList([RowSampling(live)] if sampled else []),
            stopping_criteria=[RowTracker(live, tokenizer, stop_ids, guard)],
        )
    for row in live:
        if not row.done:  # the batch's budget ran out, or generation ended before this row's last check
            finish(row, "cancelled" if row.cancel.is_set() else "length")


def _skip(row: Row) -> bool:
    if row.cancel.is_set() and not row.done:
        finish(row, "cancelled")
    return row.done
