"""The core on the two real embedded models: all-MiniLM-L6-v2 and SmolLM2-135M-Instruct (from GGUF)."""

import threading

import pytest
import torch

from adapter_core import (
    AdapterConfig,
    AdapterError,
    adapter_parameters,
    add_adapter,
    classification_logits,
    classify,
    generate,
    generate_batch,
    load_adapter,
    load_base,
    save_adapter,
    trainable_summary,
    use_adapter,
)
from adapter_core.catalog import CATALOG, embedded_path
from adapter_core.paths import model_cache

TEXTS = ["Where is my parcel? It was due on Monday.", "My invoice shows a double charge.", "The app crashes."]


def randomize(model, name, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def encode(base, texts=TEXTS):
    return base.tokenizer(texts, padding=True, return_tensors="pt")


def lm_logits(base, batch):
    return base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def hidden(base, batch):
    return base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state


def test_embedded_models_are_installed_and_offline():
    for entry in CATALOG.values():
        assert embedded_path(entry) is not None, f"{entry.package} is not installed (run make setup)"


def test_minilm_identity_accounting_and_two_adapters():
    base = load_base("minilm")
    assert base.family == "encoder" and base.model.config.model_type == "bert"
    batch = encode(base)
    with torch.no_grad():
        plain = hidden(base, batch)
        add_adapter(base.model, "route", AdapterConfig(bottleneck=64), labels=["orders", "billing", "tech"])
        with use_adapter(base.model, "route"):
            assert (hidden(base, batch) - plain).abs().max().item() <= 1e-5
    summary = trainable_summary(base.model, "route")
    assert summary.adapter_params == 2 * 6 * (2 * 384 * 64 + 64 + 384)
    assert summary.head_params == 384 * 3 + 3
    assert summary.trainable_params == 595_200 + 1_155
    assert summary.percent_of_base < 5.0
    assert summary.base_params == 22_713_216
    add_adapter(base.model, "other", AdapterConfig(bottleneck=16, placement="pfeiffer"), labels=["a", "b"])
    randomize(base.model, "route", 1)
    randomize(base.model, "other", 2)
    with torch.no_grad():
        with use_adapter(base.model, "route"):
            a = hidden(base, batch)
        with use_adapter(base.model, "other"):
            b = hidden(base, batch)
        with use_adapter(base.model, None):
            assert torch.equal(hidden(base, batch), plain)
    assert (a - b).abs().max() > 1e-3


def test_minilm_frozen_base_after_a_training_step():
    base = load_base("minilm")
    model = base.model
    add_adapter(model, "route", AdapterConfig(bottleneck=64), labels=["orders", "billing", "tech"])
    own = {id(p) for p in adapter_parameters(model, "route").values()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    batch = encode(base)
    for _ in range(2):  # W_up starts at zero, so W_down first moves on the second step
        loss = torch.nn.functional.cross_entropy(
            classification_logits(model, "route", batch["input_ids"], batch["attention_mask"]), torch.tensor([0, 1, 2])
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        if id(p) in own:
            assert not torch.equal(p, before[n])
        else:
            assert p.grad is None and torch.equal(p, before[n]), n


def test_minilm_save_load_onto_fresh_base_is_bitwise_identical(tmp_path):
    base = load_base("minilm")
    add_adapter(base.model, "route", AdapterConfig(bottleneck=64), labels=["orders", "billing", "tech"])
    randomize(base.model, "route")
    save_adapter(base.model, "route", tmp_path / "route")
    fresh = load_base("minilm")
    load_adapter(fresh.model, tmp_path / "route")
    batch = encode(base)
    with torch.no_grad():
        want = classification_logits(base.model, "route", batch["input_ids"], batch["attention_mask"])
        got = classification_logits(fresh.model, "route", batch["input_ids"], batch["attention_mask"])
    assert torch.equal(want, got)


def test_minilm_concurrent_requests_through_two_adapters():
    base = load_base("minilm")
    for i, name in enumerate(["orders", "billing"]):
        add_adapter(base.model, name, AdapterConfig(bottleneck=64), labels=["x", "y"])
        randomize(base.model, name, seed=i)
    batch = encode(base, TEXTS[:2])
    with torch.no_grad():
        expected = {}
        for name in ("orders", "billing"):
            with use_adapter(base.model, name):
                expected[name] = hidden(base, batch)
    wrong = []

    def hammer(name):
        for _ in range(200):
            with torch.no_grad(), use_adapter(base.model, name):
                if not torch.equal(hidden(base, batch), expected[name]):
                    wrong.append(name)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in ("orders", "billing")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


@pytest.mark.slow  # the complete tier: the real SmolLM2 (tests/test_generation.py covers the logic on a tiny Llama)
def test_smollm2_from_gguf_identity_save_load_and_generation(tmp_path):
    base = load_base("smollm2-135m-instruct")
    assert (model_cache() / "smollm2-135m-instruct" / "model.safetensors").is_file()
    assert base.family == "decoder" and base.model.config.model_type == "llama"
    batch = encode(base)
    with torch.no_grad():
        plain = lm_logits(base, batch)
        add_adapter(base.model, "support", AdapterConfig(bottleneck=32), task="instruction")
        with use_adapter(base.model, "support"):
            assert (lm_logits(base, batch) - plain).abs().max().item() <= 1e-5
    s = trainable_summary(base.model, "support")
    assert s.adapter_params == 2 * 30 * (2 * 576 * 32 + 32 + 576) and s.head_params == 0
    # The embedded model really is an instruct model: it answers, through a fresh adapter too.
    assert "Paris" in generate(base.model, base.tokenizer, "What is the capital of France?", "support", 16)
    randomize(base.model, "support", seed=3)
    save_adapter(base.model, "support", tmp_path / "support")
    fresh = load_base("smollm2-135m-instruct")
    load_adapter(fresh.model, tmp_path / "support")
    with torch.no_grad():
        with use_adapter(base.model, "support"):
            want = lm_logits(base, batch)
        with use_adapter(fresh.model, "support"):
            got = lm_logits(fresh, batch)
        with use_adapter(fresh.model, None):
            assert torch.equal(lm_logits(fresh, batch), plain)
    assert torch.equal(want, got)
    assert (want - plain).abs().max() > 1e-3


def test_adapter_from_one_real_model_is_refused_by_the_other(tmp_path):
    minilm = load_base("minilm")
    add_adapter(minilm.model, "route", AdapterConfig(bottleneck=8), labels=["a", "b"])
    save_adapter(minilm.model, "route", tmp_path / "route")
    smol = load_base("smollm2-135m-instruct")
    with pytest.raises(AdapterError) as err:
        load_adapter(smol.model, tmp_path / "route")
    message = str(err.value)
    assert "was trained on base 'minilm'" in message and "cannot run on 'smollm2-135m-instruct'" in message
    assert "hidden_size 384 (this base has 576)" in message


def test_unknown_model_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdapterError) as err:
        load_base("nobody-at-all/no-such-model")
    message = str(err.value)
    assert "Could not load base model 'nobody-at-all/no-such-model'" in message
    assert "HF_HUB_OFFLINE=1 is set" in message and "minilm" in message


def test_missing_local_path_gives_a_clear_error():
    with pytest.raises(AdapterError, match="Base model path '/no/such/folder' does not exist"):
        load_base("/no/such/folder")


def test_loading_bases_in_threads_leaves_initialisation_intact():
    """transformers patches torch's init functions globally while loading; concurrent loads must not leak."""
    errors = []

    def worker():
        try:
            for _ in range(3):
                base = load_base("minilm")
                add_adapter(base.model, "x", AdapterConfig(bottleneck=8), labels=["a", "b"])
                ups = [p for k, p in adapter_parameters(base.model, "x").items() if k.endswith("up.weight")]
                assert all(torch.count_nonzero(p) == 0 for p in ups), "an adapter missed its zero init"
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    smol = load_base("smollm2-135m-instruct")
    assert smol.model.lm_head.weight is smol.model.model.embed_tokens.weight
    assert not any(p.is_meta for p in smol.model.parameters())


def test_minilm_mixed_classify_equals_each_adapter_alone():
    base = load_base("minilm")
    add_adapter(base.model, "cls-pooled", AdapterConfig(bottleneck=16), labels=["a", "b"], pooling="cls")
    add_adapter(base.model, "mean-pooled", AdapterConfig(bottleneck=16), labels=["x", "y", "z"], pooling="mean")
    randomize(base.model, "cls-pooled", seed=1)
    randomize(base.model, "mean-pooled", seed=2)
    names = ["cls-pooled", "mean-pooled", "cls-pooled"]
    mixed = classify(base.model, base.tokenizer, TEXTS, names)
    for text, name, got in zip(TEXTS, names, mixed, strict=True):
        [alone] = classify(base.model, base.tokenizer, [text], name)
        assert got.label == alone.label and set(got.probabilities) == set(alone.probabilities)
        for label, p in alone.probabilities.items():
            assert abs(got.probabilities[label] - p) < 1e-5
    with pytest.raises(AdapterError, match="one name per text"):
        classify(base.model, base.tokenizer, TEXTS, names[:2])


@pytest.mark.slow  # the complete tier: the real SmolLM2 (tests/test_generation.py covers the logic on a tiny Llama)
def test_smollm2_batched_generation_with_an_adapter_per_row_equals_each_alone():
    base = load_base("smollm2-135m-instruct")
    for i, name in enumerate(["orders", "billing"]):
        add_adapter(base.model, name, AdapterConfig(bottleneck=16), task="instruction")
        randomize(base.model, name, seed=10 + i)
    prompts = ["Where is my parcel?", "Please explain why my invoice shows two charges this month.", "Hi"]
    names = ["orders", None, "billing"]
    batched = generate_batch(base.model, base.tokenizer, prompts, names, max_new_tokens=12)
    alone = [generate(base.model, base.tokenizer, p, n, 12) for p, n in zip(prompts, names, strict=True)]
    assert batched == alone
    # The adapters really do differ, so a batch that ignored the per-row choice would fail above.
    same_prompt = generate_batch(base.model, base.tokenizer, [prompts[0]] * 3, ["orders", "billing", None], 12)
    assert len(set(same_prompt)) == 3
