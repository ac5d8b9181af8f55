"""Adapter files from strangers: the config schema, the safetensors header read by hand, and the
header checked against the config before load_adapter allocates anything."""

import json
import struct
import time
import tracemalloc

import pytest
import torch
from helpers import tiny_model
from safetensors import safe_open
from safetensors.torch import save_file

import adapter_core.io as io
from adapter_core import AdapterConfig, AdapterError, add_adapter, list_adapters, load_adapter, save_adapter
from adapter_core.io import read_adapter_config, read_safetensors_header, validate_meta


@pytest.fixture
def saved(tmp_path):
    """A real classification adapter on a tiny BERT (hidden 32, 2 layers), saved to disk."""
    model = tiny_model("bert", head="base")
    add_adapter(model, "route", AdapterConfig(bottleneck=8), labels=["billing", "orders", "tech"])
    folder = save_adapter(model, "route", tmp_path / "route")
    return folder, json.loads((folder / io.CONFIG_FILE).read_text())


def edit(folder, **changes):
    meta = json.loads((folder / io.CONFIG_FILE).read_text())
    meta.update(changes)
    (folder / io.CONFIG_FILE).write_text(json.dumps(meta))


def test_a_saved_config_passes_and_is_returned_unchanged(saved):
    folder, meta = saved
    assert validate_meta(json.loads(json.dumps(meta))) == meta
    assert read_adapter_config(folder) == meta


BASE = {"model_type": "bert", "hidden_size": 32, "num_layers": 2, "name_or_path": None}
GOOD = {"task": "classification", "labels": ["a", "b"], "config": {"bottleneck": 8}, "base": BASE}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"base": "x", "config": {}}, "'base' must be an object"),
        ({"task": "regression"}, '\'task\' must be "classification" or "instruction"; got "regression"'),
        ({"config": "houlsby"}, "'config' must be an object"),
        ({"config": {"bottleneck": "64"}}, "'config' is not a valid adapter config: bottleneck must be a positive"),
        ({"config": {"dropout": "0.1"}}, "'config.dropout' must be a number"),
        ({"config": {"leave_out": 3}}, "'config.leave_out' must be a list of layer indices"),
        ({"config": {"wings": 2}}, "Unknown adapter config field"),
        ({"config": {"reduction_factor": 5e-324}}, "'config.reduction_factor' is too small"),
        ({"base": {**BASE, "hidden_size": True}}, "'base.hidden_size' must be a positive whole number; got true"),
        ({"base": {**BASE, "num_layers": "2"}}, "'base.num_layers' must be a positive whole number"),
        ({"base": {**BASE, "model_type": 7}}, "'base.model_type' must be a string"),
        ({"base": {**BASE, "name_or_path": ["x"]}}, "'base.name_or_path' must be a string or null; got a list"),
        ({"labels": None}, "'labels' must be a list of at least two label names"),
        ({"labels": ["a", 1]}, "'labels' must be a list of at least two label names"),
        ({"labels": ["a", "a"]}, "'labels' must not repeat a name"),
        ({"task": "instruction"}, "'labels' must be null for an instruction adapter"),
        ({"bottleneck": 0}, "'bottleneck' must be a positive whole number"),
        ({"bottleneck": 16}, "'bottleneck' must match the config's bottleneck 8"),
        ({"name": 5}, "'name' must be a string or null"),
        ({"pooling": "max"}, "'pooling' must be one of cls, mean, last or null"),
        ({"training": [1]}, "'training' must be an object or null"),
        ({"train_config": "x"}, "'train_config' must be an object or null"),
        ({"training": {"metrics": {"accuracy": "high"}}}, "'training.metrics' must map metric names to numbers"),
    ],
)
def test_each_wrong_field_is_named_with_what_it_should_be(changes, message):
    with pytest.raises(AdapterError) as err:
        validate_meta({**GOOD, **changes}, "up.json")
    assert str(err.value).startswith("up.json: ") and message in str(err.value)


def test_not_an_object_and_missing_fields():
    with pytest.raises(AdapterError, match="the file must hold a JSON object; got a list"):
        validate_meta([1, 2])
    with pytest.raises(AdapterError, match="'base' must be an object .*; got nothing"):
        validate_meta({"task": "classification", "config": {}})


def test_read_adapter_config_refuses_the_malformed_config_instead_of_crashing_callers(saved):
    folder, _ = saved
    (folder / io.CONFIG_FILE).write_text('{"task": "classification", "config": {}, "base": "x"}')
    with pytest.raises(AdapterError, match="route/adapter_config.json: 'base' must be an object"):
        read_adapter_config(folder)
    with pytest.raises(AdapterError, match="'base' must be an object"):
        load_adapter(tiny_model("bert", head="base"), folder)


def test_config_size_is_capped_before_parsing(saved, tmp_path):
    folder, meta = saved
    meta["padding"] = "x" * (io.MAX_CONFIG_BYTES + 10)
    (folder / io.CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match="adapter_config.json is over 1 MB") as err:
        read_adapter_config(folder)
    assert str(tmp_path) not in str(err.value)
    (folder / io.CONFIG_FILE).write_text("[" * 100_000 + "]" * 100_000)  # nesting deep enough to recurse out
    with pytest.raises(AdapterError, match="is not valid JSON"):
        read_adapter_config(folder)


def test_header_is_read_without_the_tensors(saved):
    folder, _ = saved
    header = read_safetensors_header(folder / io.WEIGHTS_FILE)
    with safe_open(str(folder / io.WEIGHTS_FILE), framework="pt") as f:
        want = {k: ("F32", tuple(f.get_slice(k).get_shape())) for k in f.keys()}  # noqa: SIM118
    assert header == want
    assert header["head.weight"] == ("F32", (3, 32)) and header["adapters.s0.l0.attn.down.weight"] == ("F32", (8, 32))


def write_raw(path, header: dict | bytes, data: bytes = b"", length: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def test_bad_headers_are_refused_with_a_reason(tmp_path):
    f = tmp_path / "w.safetensors"
    cases = [
        (dict(header=b"{}", length=2**62), "-byte header; the limit is"),
        (dict(header=b"{}", length=5000), "its header claims 5,000 bytes but the file has 10"),
        (dict(header=b"\xff\xfe{"), "its header is not valid JSON"),
        (dict(header=b"[1]"), "its header is not a JSON object"),
        (dict(header={"t": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, data=bytes(16)), "only F32"),
        (dict(header={"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, data=bytes(8)), "lies outside"),
        (dict(header={"t": {"dtype": "F32", "shape": [9], "data_offsets": [0, 16]}}, data=bytes(16)), "does not hold"),
        (dict(header={"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}), "no valid shape"),
        (dict(header={"t": {"dtype": "F32", "shape": [1]}}), "no valid shape"),
    ]
    for kwargs, message in cases:
        write_raw(f, **kwargs)
        with pytest.raises(AdapterError, match=message) as err:
            read_safetensors_header(f)
        assert str(err.value).startswith("w.safetensors") and str(tmp_path) not in str(err.value)
    f.write_bytes(b"abc")
    with pytest.raises(AdapterError, match="only 3 bytes"):
        read_safetensors_header(f)
    write_raw(f, b'{"__metadata__": {"format": "pt"}}    ')
    assert read_safetensors_header(f) == {}
    with pytest.raises(AdapterError, match="the limit is 10"):
        read_safetensors_header(f, max_header_bytes=10)


def test_half_precision_headers_are_read(tmp_path):
    f = tmp_path / "h.safetensors"
    save_file({"a": torch.zeros(2, 3, dtype=torch.float16), "b": torch.zeros(4, dtype=torch.bfloat16)}, f)
    assert read_safetensors_header(f) == {"a": ("F16", (2, 3)), "b": ("BF16", (4,))}


@pytest.fixture
def add_calls(monkeypatch):
    calls = []
    real = io.add_adapter

    def recording(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(io, "add_adapter", recording)
    return calls


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"bottleneck": 10_000_000, "config": {"bottleneck": 10_000_000}}, "bottleneck 10,000,000, 3 labels"),
        ({"labels": [str(i) for i in range(100_000)]}, "bottleneck 8, 100,000 labels"),
    ],
)
def test_a_config_claiming_huge_tensors_is_refused_before_allocation(saved, add_calls, changes, message, tmp_path):
    folder, meta = saved
    edit(folder, **{k: {**meta[k], **v} if isinstance(v, dict) else v for k, v in changes.items()})
    model = tiny_model("bert", head="base")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(AdapterError, match=message) as err:
            load_adapter(model, folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5
    assert add_calls == [] and list_adapters(model) == []
    # The bottleneck alone would allocate 2.5 GB; the JSON of 100,000 labels is the largest thing read.
    assert peak < 50 * 2**20
    assert "The two files do not belong together" in str(err.value) and str(tmp_path) not in str(err.value)


def test_head_rows_must_equal_the_labels(saved, add_calls):
    folder, meta = saved
    edit(folder, labels=["a", "b", "c", "d"])  # 33 more weights than the file holds ...
    with safe_open(str(folder / io.WEIGHTS_FILE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors["padding"] = torch.zeros(33)  # ... made up by a stray tensor: the total alone would pass
    save_file(tensors, folder / io.WEIGHTS_FILE)
    with pytest.raises(AdapterError, match="the head has 3 rows but the config lists 4 labels"):
        load_adapter(tiny_model("bert", head="base"), folder)
    assert add_calls == []


def test_valid_adapters_still_load_and_messages_name_no_server_path(saved, add_calls, tmp_path):
    folder, _ = saved
    model = tiny_model("bert", head="base")
    assert load_adapter(model, folder, name="copy") == "copy" and add_calls == ["copy"]
    with pytest.raises(AdapterError) as err:
        load_adapter(tiny_model("llama"), folder)
    assert "The adapter 'route' was trained on base" in str(err.value) and str(tmp_path) not in str(err.value)
    for bad in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(AdapterError) as err:
            read_adapter_config(bad)
        assert str(tmp_path) not in str(err.value)
    (folder / io.WEIGHTS_FILE).unlink()
    with pytest.raises(AdapterError, match="'route' is not an adapter: adapter_model.safetensors is missing"):
        load_adapter(model, folder)
