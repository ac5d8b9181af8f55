"""Running a model through an adapter: classification, prompts, and (streamed) generation."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import StoppingCriteria

from .config import TASK_ADAPTER
from .errors import AdapterError
from .generation import Row, generate_rows
from .heads import backbone_hidden, pool
from .inject import HEADS_ATTR, AdapterRecord, get_record
from .out_of_scope import scores
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
    return classification_outputs(model, name, input_ids, attention_mask)[1]


def classification_outputs(
    model: nn.Module, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features, logits) of classification adapter `name`: the head's input and its output, what
    the out-of-scope scores read (`out_of_scope.scores`)."""
    record = _require_task(model, name, "classification", "classify")
    with use_adapter(model, name):
        hidden = backbone_hidden(model, input_ids, attention_mask)
    return _head_outputs(model, record, hidden, attention_mask)


def _head_outputs(
    model: nn.Module, record: AdapterRecord, hidden: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adapter's pooling of the backbone's hidden states, and its head's logits over it."""
    head = getattr(model, HEADS_ATTR)[record.name]
    pooled = pool(hidden, attention_mask, record.pooling).to(head.weight.dtype)
    return pooled, head(pooled)


@dataclass
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    # The adapter's out-of-scope decision (`out_of_scope.py`): its score (higher: further from what it was
    # trained on; None when it has no calibrated decision) and whether that is at or below its threshold.
    in_scope: bool = True
    ood_score: float | None = None
    threshold: float | None = None  # the adapter's threshold on that score


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
        ood: list[float | None] = [None] * len(rows)
        for n in dict.fromkeys(rows):
            idx = [i for i, r in enumerate(rows) if r == n]
            pooled, logits = _head_outputs(model, records[n], hidden[idx], mask[idx])
            for i, p in zip(idx, logits.float().softmax(-1).tolist(), strict=True):
                probs[i] = p
            if (detector := records[n].detector) is not None:
                values = scores(detector.score, pooled, logits, detector.stats)[detector.score].tolist()
                for i, v in zip(idx, values, strict=True):
                    ood[i] = v
        for n, row, score in zip(rows, probs, ood, strict=True):
            labels = records[n].labels
            best = max(range(len(row)), key=row.__getitem__)
            threshold = None if score is None else records[n].detector.threshold
            in_scope = score is None or score <= threshold
            probabilities = dict(zip(labels, row, strict=True))
            out.append(Prediction(labels[best], row[best], probabilities, in_scope, score, threshold))
    return out


def format_prompt(tokenizer, instruction: str, system: str | None = None) -> str:
    """The text a model sees before its answer: the chat template when it has one, else a plain one."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": instruction}]
    return format_chat(tokenizer, messages)


def format_chat(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """A conversation (`{"role", "content"}` dicts, ending with the user's turn) as the text before the
    assistant's answer: the chat template when the tokenizer has one, else a plain one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    heads = {"user": "### Instruction:\n", "assistant": "### Response:\n"}
    parts = [heads.get(m["role"], "") + m["content"] + "\n\n" for m in messages]
    return "".join(parts) + "### Response:\n"


def stop_token_ids(tokenizer, model: nn.Module | None = None) -> list[int]:
    """The tokens that end an answer: the model's and the tokenizer's end-of-sequence, and the chat
    template's end-of-turn marker (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, ...) where that differs."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids += eos if isinstance(eos, (list, tuple)) else [eos]
    ids.append(getattr(tokenizer, "eos_token_id", None))
    ids.append(_end_of_turn_id(tokenizer))
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def _end_of_turn_id(tokenizer) -> int | None:
    """The special token the chat template puts right after an assistant's message, if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "Glad to help."
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "question"}, {"role": "assistant", "content": marker}], tokenize=False
        )
    except Exception:  # a template that wants other roles or arguments: fall back to eos alone
        return None
    if marker not in text:
        return None
    after = text.split(marker, 1)[1]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    if not ids:
        return None
    added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
    special = set(getattr(tokenizer, "all_special_ids", None) or []) | set(added.values())
    return ids[0] if ids[0] in special else None


REPETITION_WARNING = (
    "This adapter repeats itself: it may be under-trained; train longer or with more steps "
    "(leave batch size and epochs on auto)."
)


class RepetitionGuard(StoppingCriteria):
    """Stops a row whose answer ends in the same short n-gram repeated over and over, and records it.

    A row fires when its newest tokens are one n-gram of at most `max_ngram` tokens repeated at least
    `min_repeats` times, covering at least `min_tokens` tokens (so "1 1 1" in a list does not fire). The
    repetitions stay in the answer: the guard ends a loop, it does not hide one. After generation,
    `fired[i]` says whether row i was stopped, and `any` whether any was: show `REPETITION_WARNING` then.

    The generation helpers (`stream_generate`, `generate`, `generate_batch`) take one as `guard=`; one
    guard serves one call at a time. Used directly in `model.generate(stopping_criteria=[guard])`, it
    takes the prompt's length from its first call; pass `stop_ids` so that rows already ended by an
    end-of-sequence token (then padded) are not mistaken for a loop.
    """

    def __init__(self, max_ngram: int = 8, min_repeats: int = 4, min_tokens: int = 12, stop_ids=()):
        self.max_ngram, self.min_repeats, self.min_tokens = max_ngram, min_repeats, min_tokens
        self.stop_ids = set(stop_ids)
        self.reset()

    def reset(self, prompt_length: int | None = None, stop_ids=None) -> None:
        """Forget the last generation; the helpers call this before each one."""
        self.prompt_length = prompt_length
        self.fired: list[bool] = []
        self._ended: list[bool] = []
        if stop_ids is not None:
            self.stop_ids = set(stop_ids)

    @property
    def any(self) -> bool:
        return any(self.fired)

    def repeating(self, tokens: Sequence[int]) -> int | None:
        """The n of the n-gram that `tokens` end in, repeated enough to count as a loop; else None."""
        for n in range(1, self.max_ngram + 1):
            need = n * max(self.min_repeats, -(-self.min_tokens // n))
            if len(tokens) >= need and list(tokens[-need:]) == list(tokens[-n:]) * (need // n):
                return n
        return None

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        rows = input_ids.shape[0]
        if self.prompt_length is None:  # first call: one token has been generated
            self.prompt_length = input_ids.shape[1] - 1
        if len(self.fired) != rows:
            self.fired, self._ended = [False] * rows, [False] * rows
        window = self.max_ngram * max(self.min_repeats, self.min_tokens)
        new = input_ids[:, self.prompt_length :]
        for i, row in enumerate(new[:, -window:].tolist()):
            if self.fired[i] or self._ended[i]:
                continue
            if self.stop_ids and self.stop_ids.intersection(row):
                self._ended[i] = True  # ended by its end-of-sequence token; the rest is padding
            elif self.repeating(row) is not None:
                self.fired[i] = True
        return torch.tensor(self.fired, dtype=torch.bool, device=input_ids.device)


def _guard(guard: RepetitionGuard | bool | None) -> RepetitionGuard | None:
    if guard is True:
        return RepetitionGuard()
    return guard or None


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The token ids of a formatted prompt (the template already holds any special tokens)."""
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def stream_generate(
    model: nn.Module,
    tokenizer,
    instruction: str,
    name: str | None,
    max_new_tokens: int = 128,
    system: str | None = None,
    stop: threading.Event | None = None,
    guard: RepetitionGuard | bool | None = True,
) -> Iterator[str]:
    """Yield the answer's text piece by piece, greedy, up to the end-of-turn (or eos) token.

    Generation runs in a worker thread that carries the caller's adapter selection; setting `stop` ends
    generation after the current token. `guard` stops a degenerate loop (True: a fresh `RepetitionGuard`;
    pass your own to read `guard.any` once the answer is complete; None or False: no guard)."""
    if name is not None:
        _require_task(model, name, "instruction", "chat")
    pieces: queue.Queue = queue.Queue()
    row = Row(prompt_ids(tokenizer, format_prompt(tokenizer, instruction, system)), name, max_new_tokens)
    row.cancel = stop or threading.Event()
    row.on_text = pieces.put
    errors: list[BaseException] = []

    def run() -> None:
        try:
            generate_rows(model, tokenizer, [row], stop_token_ids(tokenizer, model), _guard(guard))
        except BaseException as e:  # surfaced in the caller's thread below
            errors.append(e)
        finally:
            pieces.put(None)

    worker = thread_with_context(run)
    worker.start()
    try:
        while (piece := pieces.get()) is not None:
            yield piece
    finally:
        row.cancel.set()
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
    guard: RepetitionGuard | bool | None = True,
) -> str:
    """The whole answer of instruction adapter `name` (None: the base model), greedy, up to the
    end-of-turn token; `guard` as in `stream_generate`."""
    return "".join(stream_generate(model, tokenizer, instruction, name, max_new_tokens, system, guard=guard))


def generate_batch(
    model: nn.Module,
    tokenizer,
    instructions: Sequence[str],
    names: str | None | Sequence[str | None],
    max_new_tokens: int = 128,
    system: str | None = None,
    guard: RepetitionGuard | bool | None = True,
) -> list[str]:
    """Greedy answers to many instructions in one batched `generate`: `instructions[i]` goes through
    `names[i]` (an instruction adapter, or None for the base), so one pass serves several adapters.

    Each row ends at its end-of-turn (or eos) token. `guard` stops a row caught in a loop (True: a fresh
    `RepetitionGuard`; pass your own to read `guard.fired[i]` per row afterwards; None or False: no guard)."""
    names = [names] * len(instructions) if names is None or isinstance(names, str) else list(names)
    if len(names) != len(instructions):
        raise AdapterError(f"Got {len(instructions)} instructions but {len(names)} adapter names; give one per row.")
    for n in set(names) - {None}:
        _require_task(model, n, "instruction", "generation")
    rows = [
        Row(prompt_ids(tokenizer, format_prompt(tokenizer, i, system)), n, max_new_tokens)
        for i, n in zip(instructions, names, strict=True)
    ]
    generate_rows(model, tokenizer, rows, stop_token_ids(tokenizer, model), _guard(guard))
    return [r.text for r in rows]
