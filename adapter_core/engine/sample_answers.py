"""What an instruction adapter has learned, in words: its greedy answers to a few fixed validation prompts,
next to the bare base's answers to the same prompts (computed once: the base does not change)."""

from __future__ import annotations

import pandas as pd
from torch import nn

from ..inference import generate_batch
from .batches import instruction_text
from .metrics import eval_mode

SAMPLE_TOKENS = 48  # short: enough to see the house style, cheap enough for every evaluation


def sample_prompts(frame: pd.DataFrame, n: int) -> list[tuple[str, str | None]]:
    """(prompt, system) of the first `n` validation rows, as training formats them."""
    rows = frame.head(n)
    prompts = [instruction_text(row["instruction"], row.get("input") or None) for row in rows.to_dict("records")]
    systems = list(rows["system"]) if "system" in rows else [None] * len(rows)
    return [(p, s or None) for p, s in zip(prompts, systems, strict=True)]


def answer_samples(
    model: nn.Module, tokenizer, name: str, frame: pd.DataFrame, n: int, base_answers: list[str] | None
) -> tuple[list[dict[str, str]], list[str]]:
    """`[{"prompt", "adapter", "base"}...]` for the first `n` validation prompts, and the base's answers
    (`base_answers` when given; else generated in the same batches as the adapter's, one pass per system
    prompt). The model is in eval mode meanwhile and each module goes back to its own mode after."""
    prompts = sample_prompts(frame, n)
    if base_answers is not None and len(base_answers) != len(prompts):
        base_answers = None  # asked for another number of prompts (a resumed run): answer them afresh
    adapter, base = [""] * len(prompts), list(base_answers or [""] * len(prompts))
    with eval_mode(model):
        for system in dict.fromkeys(s for _, s in prompts):
            rows = [i for i, (_, s) in enumerate(prompts) if s == system]
            texts = [prompts[i][0] for i in rows]
            names: list[str | None] = [name] * len(rows) + ([] if base_answers else [None] * len(rows))
            answers = generate_batch(model, tokenizer, texts * (len(names) // len(rows)), names, SAMPLE_TOKENS, system)
            for k, i in enumerate(rows):
                adapter[i] = answers[k]
                if not base_answers:
                    base[i] = answers[len(rows) + k]
    samples = [{"prompt": p, "adapter": a, "base": b} for (p, _), a, b in zip(prompts, adapter, base, strict=True)]
    return samples, base
