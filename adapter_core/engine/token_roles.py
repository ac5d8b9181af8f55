"""What training sees of one instruction example, token by token: the chat template, the user's text,
the tokens that carry the loss, and what truncation at max length cuts off.

The ids and labels come from `batches.instruction_example`, the function that builds training
examples, so the view cannot drift from what training does: "loss" is exactly the tokens whose label
is not IGNORE, and "cut" is exactly what its truncation drops.
"""

from __future__ import annotations

from ..inference import format_prompt
from .batches import IGNORE, instruction_example, instruction_text

CATEGORIES = ("template", "prompt", "loss", "cut")
UNLIMITED = 10**9  # a max length nothing reaches: the whole example, before truncation


def token_view(
    tokenizer,
    instruction: str,
    response: str,
    max_length: int,
    system: str | None = None,
    extra_input: str | None = None,
) -> list[tuple[str, str]]:
    """Every token of the formatted example (prompt, then response and its end-of-turn) as (text,
    category): "template" (chat-template tokens around the prompt, including a default system prompt
    the template adds), "prompt" (the user's text, and a system prompt given with the example), "loss"
    (the tokens training learns to write), "cut" (tokens past `max_length`, which training never sees).

    The token texts joined give the formatted prompt followed by the response text; a character that
    spans several tokens (byte-level BPE) is shown with the token that completes it.
    """
    ids, labels = instruction_example(tokenizer, instruction, response, extra_input, system, UNLIMITED)
    kept, _ = instruction_example(tokenizer, instruction, response, extra_input, system, max_length)
    split = next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))  # where the response starts
    prompt_text = format_prompt(tokenizer, instruction_text(instruction, extra_input), system or None)
    pieces = token_texts(tokenizer, ids[:split]) + token_texts(tokenizer, ids[split:])
    spans = _user_spans(prompt_text, instruction_text(instruction, extra_input), system)
    out, at = [], 0
    for i, piece in enumerate(pieces):
        if i >= len(kept):
            kind = "cut"
        elif labels[i] != IGNORE:
            kind = "loss"
        elif any(at < end and start < at + len(piece) for start, end in spans):
            kind = "prompt"
        else:
            kind = "template"
        out.append((piece, kind))
        at += len(piece) if i < split else 0
    return out


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """The text of each token, such that they join to the decoded sequence. Decoding a prefix at a time
    (not each token alone) keeps the spaces and multi-byte characters of byte-level tokenizers right."""
    out, done = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") or not text.startswith(done):  # a character not finished yet
            out.append("")
            continue
        out.append(text[len(done) :])
        done = text
    if out:  # whatever an unfinished character left over goes with the last token
        whole = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out[-1] += whole[len(done) :]
    return out


def _user_spans(prompt: str, user: str, system: str | None) -> list[tuple[int, int]]:
    """Character spans of the example's own text in the formatted prompt: the user's message (the last
    occurrence: the template puts it after any system prompt) and a given system prompt."""
    spans = []
    start = prompt.rfind(user)
    if user and start >= 0:
        spans.append((start, start + len(user)))
    if system:
        start = prompt.find(system)
        if start >= 0:
            spans.append((start, start + len(system)))
    return spans
