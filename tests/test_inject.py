"""The core on tiny random models of every architecture in the placement table."""

import threading

import pytest
import torch
import transformers
from helpers import run, tiny_model

from adapter_core import (
    ARCHITECTURES,
    AdapterConfig,
    AdapterError,
    adapter_parameters,
    add_adapter,
    classification_logits,
    classify,
    generate_batch,
    get_record,
    list_adapters,
    load_adapter,
    remove_adapter,
    save_adapter,
    train_mode,
    trainable_summary,
    use_adapter,
)
from adapter_core.engine.config import TrainConfig
from adapter_core.engine.setup import attach_adapter
from adapter_core.inject import HEADS_ATTR
from adapter_core.layers import AdapterSlot
from adapter_core.selection import current_selection
from adapter_core.state import get_state

REQUIRED = [
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "electra",
    "deberta-v2",
    "mpnet",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gpt2",
    "gpt_neox",
    "phi",
    "opt",
    "t5",
]


def randomize(model, name, seed=0):
    """Give adapter `name` non-zero weights, as training would, so it changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_table_covers_the_required_architectures():
    assert set(REQUIRED) <= set(ARCHITECTURES)


@pytest.mark.parametrize("model_type", REQUIRED)
@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer", "parallel"])
def test_identity_at_init_then_adapter_changes_output(model_type, placement, ids):
    model = tiny_model(model_type)
    with torch.no_grad():
        base = run(model, ids)
        add_adapter(model, "a", AdapterConfig(bottleneck=8, placement=placement), task="instruction")
        with use_adapter(model, "a"):
            fresh = run(model, ids)
        assert (fresh - base).abs().max().item() <= 1e-5
        randomize(model, "a")
        with use_adapter(model, "a"):
            trained = run(model, ids)
        assert (trained - base).abs().max().item() > 1e-3
        assert torch.equal(run(model, ids), base)  # no selection: the pure base model
    wrapped = [m for m in model.modules() if isinstance(m, AdapterSlot)]
    per_layer = 1 if placement == "pfeiffer" else len(ARCHITECTURES[model_type].stacks[-1].sublayers)
    assert len(wrapped) >= model.config.num_hidden_layers * per_layer


def test_bert_layernorm_receives_h_plus_adapter_plus_residual(ids):
    model = tiny_model("bert", head="base")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), labels=["x", "y"])
    randomize(model, "a")
    self_output = model.encoder.layer[0].attention.output
    seen = {}
    self_output.register_forward_pre_hook(lambda m, args: seen.update(h=args[0], residual=args[1]))
    self_output.LayerNorm.register_forward_pre_hook(lambda m, args: seen.update(ln_in=args[0]))
    with torch.no_grad(), use_adapter(model, "a"):
        run(model, ids)
        h = self_output.dense.base(seen["h"])
        expected = h + self_output.dense.adapters["a"](h) + seen["residual"]
    assert torch.allclose(seen["ln_in"], expected, atol=1e-6)


@pytest.mark.parametrize("model_type", ["bert", "llama", "gpt2"])
def test_only_adapter_and_head_train(model_type, ids):
    model = tiny_model(model_type, head="base")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), labels=["x", "y", "z"])
    own = adapter_parameters(model, "a")
    own_ids = {id(p) for p in own.values()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == own_ids
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(2):
        logits = classification_logits(model, "a", ids, torch.ones_like(ids))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    for name, p in model.named_parameters():
        if id(p) in own_ids:
            assert not torch.equal(p, before[name]), f"{name} did not train"
        else:
            assert p.grad is None, f"base parameter {name} has a gradient"
            assert torch.equal(p, before[name]), f"base parameter {name} changed"


@pytest.mark.parametrize("model_type", ["bert", "llama", "gpt2"])
def test_save_then_load_on_fresh_base_is_bitwise_identical(model_type, ids, tmp_path):
    model = tiny_model(model_type, seed=0)
    add_adapter(model, "a", AdapterConfig(bottleneck=8, placement="parallel"), task="instruction")
    randomize(model, "a")
    save_adapter(model, "a", tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    fresh = tiny_model(model_type, seed=0)
    assert load_adapter(fresh, tmp_path / "a") == "a"
    with torch.no_grad(), use_adapter(model, "a"):
        want = run(model, ids)
    with torch.no_grad(), use_adapter(fresh, "a"):
        got = run(fresh, ids)
    assert torch.equal(want, got)


def test_classification_head_and_labels_survive_save_load(ids, tmp_path):
    model = tiny_model("bert", head="base")
    add_adapter(model, "intent", AdapterConfig(bottleneck=4), labels=["orders", "billing"], pooling="cls")
    randomize(model, "intent")
    save_adapter(model, "intent", tmp_path / "intent")
    fresh = tiny_model("bert", head="base")
    load_adapter(fresh, tmp_path / "intent", name="again")
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(
            classification_logits(model, "intent", ids, mask), classification_logits(fresh, "again", ids, mask)
        )


def test_same_adapter_loads_twice_under_two_names(ids, tmp_path):
    model = tiny_model("llama")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    randomize(model, "a")
    save_adapter(model, "a", tmp_path / "a")
    load_adapter(model, tmp_path / "a", name="b")
    load_adapter(model, tmp_path / "a", name="c")
    assert list_adapters(model) == ["a", "b", "c"]
    with torch.no_grad():
        outs = []
        for name in ("a", "b", "c"):
            with use_adapter(model, name):
                outs.append(run(model, ids))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])


def test_two_adapters_differ_and_none_is_the_base(ids):
    model = tiny_model("gpt2")
    with torch.no_grad():
        base = run(model, ids)
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    add_adapter(model, "b", AdapterConfig(bottleneck=4, placement="pfeiffer"), task="instruction")
    randomize(model, "a", seed=1)
    randomize(model, "b", seed=2)
    with torch.no_grad():
        with use_adapter(model, "a"):
            out_a = run(model, ids)
        with use_adapter(model, "b"):
            out_b = run(model, ids)
        with use_adapter(model, None):
            out_none = run(model, ids)
    assert (out_a - out_b).abs().max() > 1e-3
    assert torch.equal(out_none, base)


def test_nested_selection_restores_the_outer_one(ids):
    model = tiny_model("llama")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    randomize(model, "a")
    with torch.no_grad(), use_adapter(model, "a"):
        outer = run(model, ids)
        with use_adapter(model, None):
            run(model, ids)
        assert torch.equal(run(model, ids), outer)


def test_concurrent_threads_each_get_their_own_adapter(ids):
    model = tiny_model("llama")
    for i, name in enumerate(["a", "b"]):
        add_adapter(model, name, AdapterConfig(bottleneck=8), task="instruction")
        randomize(model, name, seed=i)
    expected = {}
    with torch.no_grad():
        for name in ("a", "b"):
            with use_adapter(model, name):
                expected[name] = run(model, ids)
    wrong, errors = [], []
    start = threading.Barrier(2)

    def hammer(name):
        try:
            start.wait()
            for _ in range(200):
                with torch.no_grad(), use_adapter(model, name):
                    if not torch.equal(run(model, ids), expected[name]):
                        wrong.append(name)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong


@pytest.mark.parametrize(
    "placements", [("houlsby", "houlsby"), ("parallel", "parallel"), ("houlsby", "pfeiffer"), ("houlsby", "parallel")]
)
@pytest.mark.parametrize("length", [3, 40])  # one batched kernel for short rows; per-adapter groups for long
@pytest.mark.parametrize("grad", [False, True])
def test_mixed_batch_equals_each_example_alone(placements, length, grad):
    model = tiny_model("llama")
    for i, (name, placement) in enumerate(zip(["a", "b"], placements, strict=True)):
        add_adapter(model, name, AdapterConfig(bottleneck=8, placement=placement), task="instruction")
        randomize(model, name, seed=i)
    ids = torch.randint(3, 96, (3, length), generator=torch.Generator().manual_seed(1))
    choice = ["a", None, "b"]
    with torch.set_grad_enabled(grad):
        with use_adapter(model, choice):
            mixed = run(model, ids)
        for row, name in enumerate(choice):
            with use_adapter(model, name):
                alone = run(model, ids[row : row + 1])
            assert torch.allclose(mixed[row], alone[0], atol=1e-5)


def test_an_adapter_added_to_a_model_in_eval_mode_serves_without_dropout(ids):
    model = tiny_model("llama")  # eval mode, as load_base leaves it
    add_adapter(model, "a", AdapterConfig(bottleneck=8, dropout=0.5), task="instruction")
    randomize(model, "a")
    assert not any(m.training for m in model.modules())
    with torch.no_grad(), use_adapter(model, "a"):
        assert torch.equal(run(model, ids), run(model, ids))
    model.train()  # and training turns its dropout on
    with torch.no_grad(), use_adapter(model, "a"):
        assert not torch.equal(run(model, ids), run(model, ids))


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_train_mode_without_base_dropout_leaves_only_adapters_and_heads_in_train_mode(model_type, ids):
    model = tiny_model(model_type, head="base")  # both configs have hidden and attention dropout 0.1
    add_adapter(model, "a", AdapterConfig(bottleneck=8, dropout=0.5), labels=["x", "y"])
    randomize(model, "a")
    train_mode(model, base_dropout=False)
    assert getattr(model, HEADS_ATTR)["a"].training
    with torch.no_grad():
        assert torch.equal(run(model, ids), run(model, ids))  # the base alone: no dropout, attention included
        with use_adapter(model, "a"):
            assert not torch.equal(run(model, ids), run(model, ids))  # the adapter's own dropout still applies
    train_mode(model)
    with torch.no_grad():
        assert not torch.equal(run(model, ids), run(model, ids))


def test_short_mixed_rows_use_one_batched_kernel_per_slot(monkeypatch):
    model = tiny_model("llama")
    for i, name in enumerate(["a", "b"]):
        add_adapter(model, name, AdapterConfig(bottleneck=8), task="instruction")
        randomize(model, name, seed=i)
    calls = []
    batched = AdapterSlot._batched
    monkeypatch.setattr(
        AdapterSlot, "_batched", lambda self, y, stack: calls.append(y.shape) or batched(self, y, stack)
    )
    slots = sum(isinstance(m, AdapterSlot) for m in model.modules())
    with torch.no_grad(), use_adapter(model, ["a", "b", None]):
        run(model, torch.randint(3, 96, (3, 1)))
        assert len(calls) == slots
        run(model, torch.randint(3, 96, (3, 40)))  # long rows: each adapter on its own rows instead
        assert len(calls) == slots


@pytest.mark.parametrize("placement", ["houlsby", "parallel"])
def test_the_batched_kernel_with_uneven_groups_equals_each_row_alone(placement, monkeypatch):
    model = tiny_model("llama")
    for i, name in enumerate(["a", "b", "c"]):
        add_adapter(model, name, AdapterConfig(bottleneck=8, placement=placement, scaling=0.5), task="instruction")
        randomize(model, name, seed=i)
    used = []
    batched = AdapterSlot._batched
    monkeypatch.setattr(AdapterSlot, "_batched", lambda self, y, stack: used.append(1) or batched(self, y, stack))
    choice = ["a", "b", "a", "a", None, "c"]  # groups of 3, 1 and 1 (padded to 3), and a row with none
    ids = torch.randint(3, 96, (len(choice), 4))
    with torch.no_grad():
        with use_adapter(model, choice):
            mixed = run(model, ids)
        assert used
        for row, name in enumerate(choice):
            with use_adapter(model, name):
                assert torch.allclose(mixed[row], run(model, ids[row : row + 1])[0], atol=1e-5)


def test_a_batch_naming_one_adapter_throughout_takes_the_plain_path(ids):
    model = tiny_model("llama")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    randomize(model, "a")
    with torch.no_grad():
        with use_adapter(model, "a"):
            single = run(model, ids)
        with use_adapter(model, ["a"] * len(ids)):
            assert current_selection(get_state(model).key) == "a"
            assert torch.equal(run(model, ids), single)


def test_serving_helpers_refuse_mismatched_rows_and_the_wrong_task():
    model = tiny_model("llama")
    add_adapter(model, "c", AdapterConfig(bottleneck=8), labels=["x", "y"])
    add_adapter(model, "i", AdapterConfig(bottleneck=8), task="instruction")
    with pytest.raises(AdapterError, match="one per row"):
        generate_batch(model, None, ["a", "b"], ["i"])
    with pytest.raises(AdapterError, match="'c' is a classification adapter"):
        generate_batch(model, None, ["a"], ["c"])
    with pytest.raises(AdapterError, match="one name per text"):
        classify(model, None, ["a", "b"], ["c"])
    with pytest.raises(AdapterError, match="classify needs a classification adapter"):
        classify(model, None, ["a", "b"], ["c", "i"])


def test_leave_out_skips_layers():
    model = tiny_model("bert", head="base")
    add_adapter(model, "a", AdapterConfig(bottleneck=8, leave_out=[0]), labels=["x", "y"])
    assert not isinstance(model.encoder.layer[0].output.dense, AdapterSlot)
    assert isinstance(model.encoder.layer[1].output.dense, AdapterSlot)
    with pytest.raises(AdapterError, match="leaves no layer"):
        add_adapter(model, "b", AdapterConfig(bottleneck=8, leave_out=[0, 1]), labels=["x", "y"])


def test_remove_adapter_restores_the_original_modules(ids):
    model = tiny_model("bert", head="base")
    original = model.encoder.layer[0].output.dense
    add_adapter(model, "a", AdapterConfig(bottleneck=8), labels=["x", "y"])
    add_adapter(model, "b", AdapterConfig(bottleneck=8), labels=["x", "y"])
    remove_adapter(model, "a")
    assert isinstance(model.encoder.layer[0].output.dense, AdapterSlot)
    remove_adapter(model, "b")
    assert model.encoder.layer[0].output.dense is original
    assert list_adapters(model) == []
    assert not any(isinstance(m, AdapterSlot) for m in model.modules())


def test_accounting_is_the_closed_form():
    model = tiny_model("bert", head="base")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), labels=["x", "y", "z"])
    s = trainable_summary(model, "a")
    layers, hidden, r = 2, 32, 8
    assert s.adapter_params == 2 * layers * (2 * hidden * r + r + hidden)
    assert s.head_params == hidden * 3 + 3
    assert s.base_params == sum(p.numel() for n, p in model.named_parameters() if "adapter" not in n)
    assert s.size_bytes > 4 * s.trainable_params  # float32 tensors plus the safetensors header


@pytest.mark.parametrize("model_type", ["bloom", "stablelm"])
def test_discovery_handles_architectures_outside_the_table(model_type, ids):
    assert model_type not in ARCHITECTURES
    model = tiny_model(model_type)
    with torch.no_grad():
        base = run(model, ids)
    add_adapter(model, "a", AdapterConfig(bottleneck=8), task="instruction")
    assert sum(isinstance(m, AdapterSlot) for m in model.modules()) == 2 * model.config.num_hidden_layers
    with torch.no_grad(), use_adapter(model, "a"):
        assert (run(model, ids) - base).abs().max() <= 1e-5


def test_explicit_target_modules(ids):
    model = tiny_model("llama")
    config = AdapterConfig(bottleneck=8, target_modules={"layers": "model.layers", "ffn": "mlp.down_proj"})
    add_adapter(model, "a", config, task="instruction")
    assert isinstance(model.model.layers[0].mlp.down_proj, AdapterSlot)
    assert not isinstance(model.model.layers[0].self_attn.o_proj, AdapterSlot)


class _Mystery(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = transformers.PretrainedConfig(hidden_size=8)
        self.config.model_type = "mystery"
        self.proj = torch.nn.Linear(8, 8)


def test_unhandled_architecture_says_what_to_pass():
    with pytest.raises(AdapterError) as err:
        add_adapter(_Mystery(), "a", AdapterConfig(bottleneck=4), task="instruction")
    assert "'mystery' is not in the placement table" in str(err.value)
    assert "target_modules=" in str(err.value)


def test_wrong_target_path_is_named():
    model = tiny_model("llama")
    config = AdapterConfig(target_modules={"layers": "model.layers", "ffn": "mlp.nope"})
    with pytest.raises(AdapterError, match="Expected module 'model.layers.0.mlp.nope'"):
        add_adapter(model, "a", config, task="instruction")


def test_incompatible_adapter_is_refused_with_reason(tmp_path):
    bert = tiny_model("bert", head="base")
    add_adapter(bert, "a", AdapterConfig(bottleneck=8), labels=["x", "y"])
    save_adapter(bert, "a", tmp_path / "a")
    llama = tiny_model("llama")
    with pytest.raises(AdapterError) as err:
        load_adapter(llama, tmp_path / "a")
    assert "cannot run on" in str(err.value)
    assert "model_type 'bert' (this base has 'llama')" in str(err.value)
    assert list_adapters(llama) == []


def test_loading_a_folder_that_is_not_an_adapter(tmp_path):
    model = tiny_model("bert", head="base")
    with pytest.raises(AdapterError, match="adapter_config.json is missing"):
        load_adapter(model, tmp_path)


def test_duplicate_name_and_bad_name_and_unknown_selection():
    model = tiny_model("bert", head="base")
    add_adapter(model, "a", AdapterConfig(bottleneck=8), labels=["x", "y"])
    with pytest.raises(AdapterError, match="already has an adapter named 'a'"):
        add_adapter(model, "a", AdapterConfig(bottleneck=8), labels=["x", "y"])
    with pytest.raises(AdapterError, match="is not allowed"):
        add_adapter(model, "../evil", AdapterConfig(bottleneck=8), labels=["x", "y"])
    with pytest.raises(AdapterError, match="at least two distinct label names"):
        add_adapter(model, "c", AdapterConfig(bottleneck=8), labels=["x"])
    with pytest.raises(AdapterError, match="No adapter named 'zzz'"), use_adapter(model, "zzz"):
        pass


@pytest.mark.parametrize(
    "family, mode, asked, pooled",
    [
        ("bert", "adapter", None, "cls"),  # the adapter learns to fill the first token
        ("bert", "head", None, "mean"),  # a frozen encoder's first token never learned to sum the text up
        ("bert", "head", "cls", "cls"),  # what a run asks for always wins
        ("llama", "head", None, "last"),  # a decoder reads the whole text only at its last token
        ("llama", "adapter", None, "last"),
    ],
)
def test_a_training_run_pools_by_family_and_by_what_it_trains(family, mode, asked, pooled):
    model = tiny_model(family)
    config = TrainConfig(name="r", mode=mode, pooling=asked)
    attach_adapter(model, config, ["a", "b"], None, lambda e: None)
    assert get_record(model, "r").pooling == pooled
