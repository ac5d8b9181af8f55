"""Every way a user's data file can be wrong gets a message that names the file, column or row."""

import pytest

from adapter_core.engine.batches import IGNORE, drop_unanswered, instruction_example, tokenize
from adapter_core.engine.data import DataError, describe_lengths, load_data, split


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error_of(path, task="classification", **kwargs):
    with pytest.raises(DataError) as err:
        load_data(path, task, **kwargs)
    return str(err.value)


GOOD = "text,label\n" + "".join(f"message {i},{'a' if i % 2 else 'b'}\n" for i in range(20))


def test_good_csv_with_aliases_is_read_and_summarised(tmp_path):
    path = write(tmp_path, "d.csv", "Sentence,Category\n" + "".join(f"row {i},{i % 3}\n" for i in range(30)))
    data = load_data(path, "classification")
    assert data.summary.columns == {"text": "Sentence", "label": "Category"}
    assert data.labels == ["0", "1", "2"]
    assert data.summary.rows_used == 30 and data.summary.label_counts == {"0": 10, "1": 10, "2": 10}


def test_tsv_and_jsonl_are_read(tmp_path):
    tsv = write(tmp_path, "d.tsv", GOOD.replace(",", "\t"))
    assert load_data(tsv, "classification").summary.rows_used == 20
    jsonl = write(tmp_path, "d.jsonl", "".join(f'{{"prompt": "q{i}", "output": "a{i}"}}\n' for i in range(5)))
    data = load_data(jsonl, "instruction")
    assert data.summary.columns == {"instruction": "prompt", "response": "output"}


def test_empty_file(tmp_path):
    assert "d.csv is empty" in error_of(write(tmp_path, "d.csv", ""))
    assert "d.csv is empty" in error_of(write(tmp_path, "d.csv", "\n  \n"))


def test_header_without_rows(tmp_path):
    assert "has a header (text, label) but no rows of data" in error_of(write(tmp_path, "d.csv", "text,label\n"))


def test_no_header(tmp_path):
    message = error_of(write(tmp_path, "d.csv", "I love it,positive\nawful,negative\nfine,positive\n"))
    assert "d.csv seems to have no header row" in message and "'text,label'" in message


def test_missing_column_names_the_columns_found(tmp_path):
    message = error_of(write(tmp_path, "d.csv", "text,score\nhello,1\nbye,2\n"))
    assert "d.csv has no label column. Columns found: text, score" in message
    assert "--label-column" in message


def test_ambiguous_column(tmp_path):
    message = error_of(write(tmp_path, "d.csv", "utterance,message,label\na,b,x\nc,d,y\n"))
    assert "'utterance', 'message' could each be the text column" in message


def test_explicit_mapping_resolves_ambiguity_and_wrong_mapping_is_named(tmp_path):
    path = write(tmp_path, "d.csv", "utterance,message,label\na,b,x\nc,d,y\ne,f,x\ng,h,y\n")
    data = load_data(path, "classification", columns={"text": "message"})
    assert data.frame["text"].tolist() == ["b", "d", "f", "h"]
    assert "has no column 'body' (mapped as text)" in error_of(path, columns={"text": "body"})


def test_bom_and_stray_carriage_returns_in_header(tmp_path):
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbftext \r,label\r\r\n" + b"hi,a\r\nyo,b\r\nhey,a\r\n")
    data = load_data(path, "classification")
    assert data.summary.columns == {"text": "text", "label": "label"}
    assert data.frame["text"].tolist() == ["hi", "yo", "hey"]


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = write(tmp_path, "d.csv", b"text,label\nok,a\ncaf\xe9,b\n")
    message = error_of(path)
    assert "d.csv is not UTF-8 text: byte 0xe9 on line 3" in message and "UTF-8" in message


def test_blank_and_nan_cells_are_dropped_and_counted(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhello,a\n,b\nbye,\nnan,a\nok,b\nyes,a\n")
    data = load_data(path, "classification")
    assert data.summary.dropped_blank == 3 and data.summary.rows_used == 3
    assert any("Dropped 3 rows with a blank text or label (lines [3, 4, 5]" in w for w in data.summary.warnings)


def test_only_one_class(tmp_path):
    message = error_of(write(tmp_path, "d.csv", "text,label\na,x\nb,x\nc,x\n"))
    assert "column 'label' has only one label ('x')" in message


def test_class_with_a_single_example_is_reported(tmp_path):
    data = load_data(write(tmp_path, "d.csv", GOOD + "lonely,c\n"), "classification")
    assert any("Labels with a single example: 'c'" in w for w in data.summary.warnings)
    train, val = split(data, 0.2, seed=0)
    assert "c" in set(train["label"]) and "c" not in set(val["label"])


def test_duplicate_rows_are_reported_and_dropped(tmp_path):
    data = load_data(write(tmp_path, "d.csv", GOOD + "message 1,a\nmessage 1,a\n"), "classification")
    assert data.summary.dropped_duplicates == 2
    assert any("Dropped 2 duplicate rows (first at line 22)" in w for w in data.summary.warnings)


def test_file_over_the_size_limit(tmp_path):
    message = error_of(write(tmp_path, "d.csv", GOOD), max_bytes=100)
    assert "d.csv is 0.3 KB, over the 0.1 KB limit" in message and "smaller sample" in message


def test_binary_file_named_csv(tmp_path):
    message = error_of(write(tmp_path, "d.csv", b"PK\x03\x04\x00\x00binary\x00stuff"))
    assert "d.csv looks like a binary file" in message


def test_unsupported_extension_and_bad_json(tmp_path):
    assert "unsupported file type '.xlsx'" in error_of(write(tmp_path, "d.xlsx", "x"))
    assert "d.jsonl, line 2: not valid JSON" in error_of(write(tmp_path, "d.jsonl", '{"text": "a"}\n{oops\n'))


def test_stratified_split_keeps_label_balance(tmp_path):
    rows = "".join(f"t{i},{'a' if i < 80 else 'b'}\n" for i in range(100))
    data = load_data(write(tmp_path, "d.csv", "text,label\n" + rows), "classification")
    train, val = split(data, 0.1, seed=0)
    assert val["label"].value_counts().to_dict() == {"a": 8, "b": 2}
    assert len(train) == 90 and not set(train["text"]) & set(val["text"])


def test_texts_longer_than_max_length_are_truncated(tmp_path):
    from transformers import AutoTokenizer

    from adapter_core.catalog import CATALOG, embedded_path

    tok = AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))
    data = load_data(write(tmp_path, "d.csv", "text,label\n" + "word " * 100 + ",a\nshort,b\n"), "classification")
    ds = tokenize(data.frame, "classification", tok, 16, data.labels)
    assert sorted(ds["length"]) == [3, 16]


class _Tok:
    """A character-level tokenizer with no chat template: enough to check label masking exactly."""

    eos_token = "$"
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_no_prompt_token_carries_a_label():
    ids, labels = instruction_example(_Tok(), "Where is it?", "On its way.", None, None, 512)
    prompt_len = len("### Instruction:\nWhere is it?\n\n### Response:\n")
    assert all(lab == IGNORE for lab in labels[:prompt_len])
    assert labels[prompt_len:] == ids[prompt_len:]
    assert "".join(chr(i) for i in labels[prompt_len:]) == "On its way.$"  # response plus end token


@pytest.mark.slow  # the complete tier: the real SmolLM2's chat template
def test_chat_template_masking_on_smollm2(tmp_path):
    from adapter_core import load_base

    tok = load_base("smollm2-135m-instruct").tokenizer
    ids, labels = instruction_example(tok, "Where is my parcel?", "Hello from the Orders Desk!", None, None, 512)
    answer = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    prompt = [i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE]
    assert tok.decode(answer).startswith("Hello from the Orders Desk!<|im_end|>")
    assert "Where is my parcel?" in tok.decode(prompt) and "Orders Desk" not in tok.decode(prompt)
    first = labels.index(next(lab for lab in labels if lab != IGNORE))
    assert all(lab == IGNORE for lab in labels[:first]) and all(lab != IGNORE for lab in labels[first:])


def test_examples_cut_before_their_response_are_reported_and_left_out(tmp_path):
    long_question = "why " * 30  # its prompt alone is longer than max length 60
    csv = f"instruction,response\n{long_question},Because.\nWhere is it?,On its way.\n"
    data = load_data(write(tmp_path, "d.csv", csv), "instruction")
    ds = tokenize(data.frame, "instruction", _Tok(), 60, None)
    assert ds["response_tokens"] == [0, len("On its way.$")]
    describe_lengths(data.summary, ds, 60)
    assert "1 of 2 examples have a prompt of 60 tokens or more" in "\n".join(data.summary.lines())
    kept = drop_unanswered(ds)
    assert len(kept) == 1 and kept["response_tokens"] == [12]


def test_training_refuses_data_whose_prompts_all_fill_max_length(tmp_path, monkeypatch):
    from adapter_core.engine.train import TrainConfig, train

    monkeypatch.setenv("ADAPTER_STUDIO_HOME", str(tmp_path / "home"))
    rows = "".join(f"Question number {i} about my parcel?,Answer {i}.\n" for i in range(20))
    path = write(tmp_path, "d.csv", "instruction,response\n" + rows)
    config = TrainConfig(base="smollm2-135m-instruct", task="instruction", data=str(path), name="x", max_length=8)
    with pytest.raises(DataError, match="every prompt fills it. Raise max length"):
        train(config, tmp_path / "run")
