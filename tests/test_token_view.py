"""The token view marks exactly what training sees: the loss-bearing tokens of `batches.tokenize`, the
template around the user's text, and what truncation cuts, on SmolLM2's real chat template."""

import pandas as pd
import pytest

from adapter_core import load_base
from adapter_core.engine.batches import IGNORE, response_text, tokenize
from adapter_core.engine.token_roles import CATEGORIES, token_view
from adapter_core.inference import format_prompt

INSTRUCTION = "Where is my order #4411? It's late — café ☕"
RESPONSE = "It ships tomorrow. Sorry for the wait! ☕"


@pytest.fixture(scope="module")
def tokenizer():
    return load_base("smollm2-135m-instruct").tokenizer


def trained(tokenizer, max_length, **row):
    """input_ids and labels as training builds them, for one example."""
    frame = pd.DataFrame([{"instruction": INSTRUCTION, "response": RESPONSE, **row}])
    ds = tokenize(frame, "instruction", tokenizer, max_length, None)
    return ds[0]["input_ids"], ds[0]["labels"]


def test_loss_tokens_are_exactly_those_training_puts_a_label_on(tokenizer):
    view = token_view(tokenizer, INSTRUCTION, RESPONSE, max_length=256)
    ids, labels = trained(tokenizer, 256)
    assert len(view) == len(ids)  # one entry per token, nothing cut
    assert [kind == "loss" for _, kind in view] == [label != IGNORE for label in labels]
    assert {kind for _, kind in view} == {"template", "prompt", "loss"} <= set(CATEGORIES)
    loss_text = "".join(text for text, kind in view if kind == "loss")
    assert loss_text.startswith(RESPONSE) and loss_text.rstrip().endswith("<|im_end|>")  # the end-of-turn too
    prompt_text = "".join(text for text, kind in view if kind == "prompt")
    assert prompt_text == INSTRUCTION  # the user's text, without the template around it
    template = "".join(text for text, kind in view if kind == "template")
    assert "<|im_start|>user" in template and "<|im_start|>assistant" in template


def test_the_tokens_join_to_the_formatted_prompt_and_response(tokenizer):
    view = token_view(tokenizer, INSTRUCTION, RESPONSE, max_length=256, system="Answer in one line.")
    prompt = format_prompt(tokenizer, INSTRUCTION, "Answer in one line.")
    assert "".join(text for text, _ in view) == prompt + response_text(
        tokenizer, prompt, INSTRUCTION, RESPONSE, "Answer in one line."
    )
    # A system prompt given with the example is the example's text, not the template's.
    assert "".join(text for text, kind in view if kind == "prompt") == "Answer in one line." + INSTRUCTION
    ids, labels = trained(tokenizer, 256, system="Answer in one line.")
    assert [kind == "loss" for _, kind in view] == [label != IGNORE for label in labels]


def test_truncation_marks_the_tail_cut(tokenizer):
    full, _ = trained(tokenizer, 256)
    short = len(full) - 12  # cuts the end of the response
    view = token_view(tokenizer, INSTRUCTION, RESPONSE, max_length=short)
    ids, labels = trained(tokenizer, short)
    assert len(ids) == short and len(view) == len(full)
    assert [kind for _, kind in view[short:]] == ["cut"] * 12
    assert "cut" not in [kind for _, kind in view[:short]]
    assert [kind == "loss" for _, kind in view[:short]] == [label != IGNORE for label in labels]
    assert "".join(text for text, _ in view[short:]).rstrip().endswith("<|im_end|>")  # the end-of-turn was cut

    # A max length inside the prompt cuts all of the response: nothing carries loss.
    tiny = token_view(tokenizer, INSTRUCTION, RESPONSE, max_length=20)
    assert [kind for _, kind in tiny[20:]] == ["cut"] * (len(full) - 20) and "loss" not in dict(tiny).values()


def test_an_extra_input_is_part_of_the_prompt(tokenizer):
    view = token_view(tokenizer, "Summarise this.", "A late parcel.", 256, extra_input="My parcel is late.")
    assert "".join(text for text, kind in view if kind == "prompt") == "Summarise this.\n\nMy parcel is late."
    frame = pd.DataFrame(
        [{"instruction": "Summarise this.", "response": "A late parcel.", "input": "My parcel is late."}]
    )
    labels = tokenize(frame, "instruction", tokenizer, 256, None)[0]["labels"]
    assert [kind == "loss" for _, kind in view] == [label != IGNORE for label in labels]
