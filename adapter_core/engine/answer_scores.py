"""Instruction adapters, measured: held-out (instruction, response) pairs answered by each adapter and by
the bare base, and the answers scored against the responses.

- ROUGE-L: the F-measure of the longest common subsequence of words (`rouge-score`), averaged over
  pairs; words are Unicode word characters, lower-cased, so text in any script is scored.
- chrF: character n-gram F-score over the whole set (`sacrebleu`'s corpus chrF, 0-100).
- exact match: the share of answers equal to the response once case and spacing are set aside.
- loops: the share of answers the repetition guard ended (the same short n-gram over and over).
- cut: the share of answers that reached the token limit without ending.

The answers of every compared model come from one mixed-adapter batch per group of prompts (the adapters
and the bare base row by row, in one `generate`), greedy by default, with the base's chat template. The
settings used are returned beside the scores, so a number always says how it was made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from ..card import answer_scores_lines
from ..errors import AdapterError
from ..generation import Row, generate_rows
from ..inference import RepetitionGuard, format_prompt, prompt_ids, stop_token_ids
from .data import load_data
from .metrics import eval_mode
from .sample_answers import sample_prompts

ANSWER_SCORES_FILE = "answer_scores.json"  # in a run's folder: the end-of-run scores and the answers
BASE = "(base model)"  # how the bare base is named beside the adapters
SCORE_NAMES = {"rouge_l": "ROUGE-L", "chrf": "chrF", "exact_match": "exact match", "loop_rate": "loops",
               "cut_rate": "cut at limit"}  # fmt: skip
SCORE_KEYS = tuple(SCORE_NAMES)
END_OF_RUN_TOKENS = 64  # an answer's budget when a run ends (its `score_pairs` pairs): short, for a CPU


@dataclass(frozen=True)
class ScoreSettings:
    """How the answers are generated. Greedy unless `temperature` > 0 (then sampled, `top_p` nucleus)."""

    max_new_tokens: int = 128
    max_pairs: int | None = None  # the first pairs of the file; None: all
    temperature: float = 0.0
    top_p: float = 1.0
    prompts_per_batch: int = 16  # prompts per `generate`; each batch holds every compared model's rows

    def describe(self, pairs: int, of: int) -> dict[str, Any]:
        guard = RepetitionGuard()
        return {
            "decoding": "greedy"
            if self.temperature <= 0
            else f"sampled (temperature {self.temperature}, top-p {self.top_p})",
            "max_new_tokens": self.max_new_tokens,
            "pairs": pairs,
            "of_pairs": of,
            "template": "the base's chat template, as in training",
            "loop": f"an n-gram of up to {guard.max_ngram} tokens repeated {guard.min_repeats}+ times over "
            f"{guard.min_tokens}+ tokens ends the answer",
            "batching": "one mixed-adapter batch of all compared models per group of prompts",
        }


class _Words:
    """rouge-score's tokenizer interface: Unicode words, lower-cased (its default keeps ASCII only)."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def text_scores(answers: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-L (mean F-measure, 0-1), chrF (corpus, 0-100) and exact match (share) of answers."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if not answers or len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Words())
    rouge = [scorer.score(ref, ans)["rougeL"].fmeasure for ans, ref in zip(answers, references, strict=True)]
    return {
        "rouge_l": sum(rouge) / len(rouge),
        "chrf": sacrebleu.corpus_chrf(list(answers), [list(references)]).score,
        "exact_match": sum(_same(a, r) for a, r in zip(answers, references, strict=True)) / len(answers),
    }


def row_scores(rows: Sequence[Row], references: Sequence[str]) -> dict[str, float]:
    """`text_scores` of generated rows, with how often they looped and how often they were cut."""
    n = len(rows)
    return {
        **text_scores([r.text for r in rows], references),
        "loop_rate": sum(r.repeated for r in rows) / n,
        "cut_rate": sum(r.finish_reason == "length" for r in rows) / n,
    }


def generate_answers(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[tuple[str, str | None]],
    names: Sequence[str | None],
    settings: ScoreSettings,
) -> dict[str | None, list[Row]]:
    """Each model's (adapter name; None: the bare base) answer to each (prompt, system), generated as one
    mixed-adapter batch of all `names` per `prompts_per_batch` prompts."""
    out: dict[str | None, list[Row]] = {name: [] for name in names}
    stop_ids = stop_token_ids(tokenizer, model)
    ids = [prompt_ids(tokenizer, format_prompt(tokenizer, p, s)) for p, s in prompts]
    step = max(1, settings.prompts_per_batch)
    with eval_mode(model):
        for start in range(0, len(ids), step):
            rows = {
                name: [
                    Row(i, name, settings.max_new_tokens, settings.temperature, settings.top_p)
                    for i in ids[start : start + step]
                ]
                for name in names
            }
            generate_rows(model, tokenizer, [r for rs in rows.values() for r in rs], stop_ids, RepetitionGuard())
            for name, rs in rows.items():
                out[name].extend(rs)
    return out


def score_pairs(
    model: nn.Module,
    tokenizer,
    frame: pd.DataFrame,
    names: Sequence[str | None],
    settings: ScoreSettings | None = None,
    labels: dict[str | None, str] | None = None,
) -> dict[str, Any]:
    """Validated instruction rows (`instruction`, `response`, optional `input` and `system`) answered by
    each of `names` (None: the bare base) and scored: {"settings", "scores": [{"adapter", "model",
    ROUGE-L, chrF, ...}], "answers": {label: [answer, ...]}}. `labels` name the models in the result
    (default: the adapter's name, `BASE` for None)."""
    settings = settings or ScoreSettings()
    rows = frame if settings.max_pairs is None else frame.head(settings.max_pairs)
    if not len(rows):
        raise AdapterError("There are no (instruction, response) pairs to score.")
    prompts = sample_prompts(rows, len(rows))
    references = [str(r) for r in rows["response"]]
    answers = generate_answers(model, tokenizer, prompts, list(names), settings)
    labels = {name: (labels or {}).get(name) or (name if name is not None else BASE) for name in names}
    return {
        "settings": settings.describe(len(rows), len(frame)),
        "scores": [
            {
                "adapter": labels[name],
                "model": "base" if name is None else "adapter",
                **{k: round(v, 4) for k, v in row_scores(answers[name], references).items()},
            }
            for name in names
        ],
        "answers": {labels[name]: [r.text for r in answers[name]] for name in names},
    }


def score_file(
    base,
    names: Sequence[str | None],
    data_path,
    settings: ScoreSettings | None = None,
    columns: dict[str, str] | None = None,
    max_rows: int | None = None,
    labels: dict[str | None, str] | None = None,
) -> dict[str, Any]:
    """`score_pairs` on a test file of (instruction, response) pairs, for instruction adapters `names` of
    `base` (None: the bare base). A file over `max_rows` rows is refused before anything is generated."""
    data = load_data(data_path, "instruction", columns, max_rows=max_rows)
    return score_pairs(base.model, base.tokenizer, data.frame, names, settings, labels)


def scores_markdown(result: dict[str, Any]) -> str:
    """The scores and how they were made, as a Markdown table (the model card's own)."""
    return "\n".join(answer_scores_lines(result))


def scores_text(result: dict[str, Any]) -> str:
    """How the answers were made, then the scores in one line per model: for a report or a terminal."""
    lines = [f"Answer scores on {scores_settings_line(result['settings'])}:"]
    for s in result["scores"]:
        parts = [
            f"ROUGE-L {s['rouge_l']:.3f}",
            f"chrF {s['chrf']:.1f}",
            f"exact match {s['exact_match']:.0%}",
            f"loops {s['loop_rate']:.0%}",
            f"cut at limit {s['cut_rate']:.0%}",
        ]
        lines.append(f"  {s['adapter']}: " + ", ".join(parts))
    return "\n".join(lines)


def scores_settings_line(settings: dict[str, Any]) -> str:
    """How the scores were made, in words."""
    pairs = f"{settings['pairs']} pairs"
    if settings["of_pairs"] > settings["pairs"]:
        pairs += f" (the first of {settings['of_pairs']})"
    return f"{pairs}, {settings['decoding']} decoding, at most {settings['max_new_tokens']} new tokens"
