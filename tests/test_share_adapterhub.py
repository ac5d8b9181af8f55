"""AdapterHub's format without AdapterHub: folders written here in their exact layout (as `adapters` 1.3.0's
`save_adapter(..., use_safetensors=True)` writes them) from known tensors, imported and checked against a
reference forward that implements their adapter on the plain model with hooks; our exports read back.
The round trip against the real package is bench/adapterhub_roundtrip.py (the slow test at the end); one
folder that package's default save wrote, pickled, is committed with its outputs (tests/fixtures/adapterhub_pickled)
and checked in the fast tier."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, tiny_model
from safetensors.torch import load_file, save_file

from adapter_core import (
    AdapterConfig,
    AdapterError,
    adapter_parameters,
    add_adapter,
    classification_logits,
    get_record,
    load_adapter,
    load_base,
    read_adapter_config,
    save_adapter,
    use_adapter,
)
from adapter_core.share import export_adapterhub
from adapter_core.share.adapterhub_export import reduction_factor

# Their BnConfig exactly as adapters 1.3.0 saves DoubleSeqBnConfig(reduction_factor=16) (read from a real save).
HOULSBY = {
    "adapter_residual_before_ln": False, "cross_adapter": False, "dropout": 0.0, "factorized_phm_W": True,
    "factorized_phm_rule": False, "hypercomplex_nonlinearity": "glorot-uniform", "init_weights": "bert",
    "init_weights_seed": None, "inv_adapter": None, "inv_adapter_reduction_factor": None, "is_parallel": False,
    "learn_phm": True, "leave_out": [], "ln_after": False, "ln_before": False, "mh_adapter": True,
    "non_linearity": "swish", "original_ln_after": True, "original_ln_before": False, "output_adapter": True,
    "phm_bias": True, "phm_c_init": "normal", "phm_dim": 4, "phm_init_range": 0.0001, "phm_layer": False,
    "phm_rank": 1, "reduction_factor": 16, "residual_before_ln": True, "scaling": 1.0, "shared_W_phm": False,
    "shared_phm_rule": True, "stochastic_depth": 0.0, "use_gating": False,
}  # fmt: skip
PFEIFFER = {**HOULSBY, "mh_adapter": False, "non_linearity": "relu"}  # SeqBnConfig(original_ln_before=False)
PARALLEL = {**PFEIFFER, "is_parallel": True, "scaling": 4.0, "reduction_factor": 8, "init_weights": "mam_adapter"}
ACTS = {"swish": torch.nn.functional.silu, "relu": torch.relu, "gelu": torch.nn.functional.gelu, "tanh": torch.tanh}
HIDDEN, LAYERS = 32, 2


def write_theirs(folder: Path, config: dict, name="task", prefix="bert.", head_layers=None, labels=("a", "b", "c")):
    """An AdapterHub folder with random non-zero tensors; returns them (their names -> tensor)."""
    folder.mkdir(parents=True)
    r = int(HIDDEN // config["reduction_factor"])
    g = torch.Generator().manual_seed(len(name) + (head_layers or 0))
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    kinds = [k for k, on in (("attention.output", config["mh_adapter"]), ("output", config["output_adapter"])) if on]
    tensors = {}
    for i in range(LAYERS):
        for kind in kinds:
            if i in config["leave_out"]:
                continue
            m = f"{prefix}encoder.layer.{i}.{kind}.adapters.{name}"
            tensors |= {f"{m}.adapter_down.0.weight": rand(r, HIDDEN), f"{m}.adapter_down.0.bias": rand(r)}
            tensors |= {f"{m}.adapter_up.weight": rand(HIDDEN, r), f"{m}.adapter_up.bias": rand(HIDDEN)}
    common = {"hidden_size": HIDDEN, "model_class": "BertAdapterModel", "model_name": "bert-base-uncased"}
    common |= {"model_type": "bert", "name": name, "version": "adapters.1.3.0"}
    (folder / "adapter_config.json").write_text(json.dumps({"config": config, **common}))
    save_file(tensors, folder / "adapter.safetensors")
    head = {}
    if head_layers:
        n = len(labels)
        head = {f"heads.{name}.1.weight": rand(HIDDEN if head_layers == 2 else n, HIDDEN)}
        head[f"heads.{name}.1.bias"] = rand(HIDDEN if head_layers == 2 else n)
        if head_layers == 2:
            head |= {f"heads.{name}.4.weight": rand(n, HIDDEN), f"heads.{name}.4.bias": rand(n)}
        head_cfg = {"head_type": "classification", "num_labels": n, "layers": head_layers, "use_pooler": False}
        head_cfg |= {"activation_function": "tanh", "label2id": {x: i for i, x in enumerate(labels)}, "bias": True}
        (folder / "head_config.json").write_text(json.dumps({"config": head_cfg, **common}))
        save_file(head, folder / "model_head.safetensors")
    return {**tensors, **head}


def reference(model, config: dict, tensors: dict, ids, mask, name="task", prefix="bert."):
    """Their adapter on the plain model, by hooks: the dense output plus scaling * up(act(down(x))), where x
    is that output (serial) or the sub-layer's input (parallel). Returns the last hidden state."""
    act, hooks, stash = ACTS[config["non_linearity"]], [], {}
    for i, block in enumerate(model.encoder.layer):
        for kind, owner in (("attention.output", block.attention.output), ("output", block.output)):
            key = f"{prefix}encoder.layer.{i}.{kind}.adapters.{name}"
            if f"{key}.adapter_up.weight" not in tensors:
                continue
            t = {
                p: tensors[f"{key}.{p}"]
                for p in ("adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias")
            }

            def pre(module, args, key=key):
                stash[key] = args[1]  # BertSelfOutput / BertOutput(hidden_states, input_tensor)

            def post(module, args, out, t=t, key=key):
                x = stash[key] if config["is_parallel"] else out
                down = act(x @ t["adapter_down.0.weight"].T + t["adapter_down.0.bias"])
                return out + config["scaling"] * (down @ t["adapter_up.weight"].T + t["adapter_up.bias"])

            hooks += [owner.register_forward_pre_hook(pre), owner.dense.register_forward_hook(post)]
    try:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        for h in hooks:
            h.remove()


def head_reference(hidden, tensors, layers, name="task"):
    x = hidden[:, 0]  # their head reads the first token
    w = lambda i: (tensors[f"heads.{name}.{i}.weight"], tensors[f"heads.{name}.{i}.bias"])  # noqa: E731
    if layers == 2:
        x = torch.tanh(x @ w(1)[0].T + w(1)[1])
        return x @ w(4)[0].T + w(4)[1]
    return x @ w(1)[0].T + w(1)[1]


@pytest.fixture
def batch(ids):
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return ids, mask


@pytest.mark.parametrize(
    "config, head_layers, prefix",
    [(HOULSBY, 2, "bert."), (PFEIFFER, None, ""), (PARALLEL, 1, "bert."), ({**HOULSBY, "leave_out": [0]}, None, "")],
    ids=["houlsby-two-layer-head", "pfeiffer-headless-unprefixed", "parallel-ffn-one-layer-head", "leave-out"],
)
def test_their_folder_loads_with_their_outputs(tmp_path, batch, config, head_layers, prefix):
    ids, mask = batch
    tensors = write_theirs(tmp_path / "theirs", config, prefix=prefix, head_layers=head_layers)
    model = tiny_model("bert", head="base")
    want = reference(model, config, tensors, ids, mask, prefix=prefix)
    assert (want - reference(model, {**config, "scaling": 0.0}, tensors, ids, mask, prefix=prefix)).abs().max() > 0.1
    name = load_adapter(model, tmp_path / "theirs")
    with torch.no_grad(), use_adapter(model, name):
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(got, want, atol=1e-6)
    if head_layers:
        with torch.no_grad():
            logits = classification_logits(model, name, ids, mask)
        assert torch.allclose(logits, head_reference(want, tensors, head_layers), atol=1e-6)
    meta = read_adapter_config(tmp_path / "theirs")  # the CLI's path: the metadata it imports as
    assert meta["task"] == ("classification" if head_layers else "instruction") and meta["base"]["model_type"] == "bert"
    assert meta["labels"] == (["a", "b", "c"] if head_layers else None)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"original_ln_before": True}, "original_ln_before=True"),
        ({"ln_after": True}, "layer-norm adapters"),
        ({"use_gating": True}, "use_gating=True"),
        ({"scaling": "learned"}, "scaling='learned'"),
        ({"non_linearity": "leakyrelu"}, "non_linearity='leakyrelu'"),
        ({"phm_layer": True}, "phm_layer=True"),
        ({"inv_adapter": "nice"}, "invertible adapters"),
        ({"reduction_factor": {"default": 16}}, "per-layer reduction_factor"),
        ({"architecture": "lora"}, "architecture 'lora'"),
        ({"original_ln_before": True, "ln_before": True}, "original_ln_before=True (their adapter would read"),
    ],
)
def test_differences_that_cannot_map_are_named(tmp_path, changes, message):
    write_theirs(tmp_path / "theirs", {**HOULSBY, "reduction_factor": 16}, prefix="")
    cfg = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    cfg["config"].update(changes)
    (tmp_path / "theirs" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="cannot map onto Adapter Studio's") as err:
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs")
    assert message in str(err.value) and str(tmp_path) not in str(err.value)
    if len(changes) == 2:
        assert "layer-norm adapters" in str(err.value)  # every difference, in one message


def test_an_unversioned_gelu_is_their_tanh_approximation_and_refused(tmp_path):
    write_theirs(tmp_path / "theirs", {**HOULSBY, "non_linearity": "gelu"}, prefix="")
    cfg = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    del cfg["version"]
    (tmp_path / "theirs" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="tanh approximation"):
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs")


def pickle_folder(folder: Path) -> None:
    """Their default save: the same tensors, under the same names, as `torch.save` pickles."""
    for safe, pickle in (
        ("adapter.safetensors", "pytorch_adapter.bin"),
        ("model_head.safetensors", "pytorch_model_head.bin"),
    ):
        if (folder / safe).exists():
            torch.save(load_file(folder / safe), folder / pickle)
            (folder / safe).unlink()


def test_a_pickle_loads_locally_with_the_safe_loader_and_the_same_outputs(tmp_path, batch, monkeypatch, caplog):
    monkeypatch.delenv("ADAPTER_STUDIO_PUBLIC", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    ids, mask = batch
    tensors = write_theirs(tmp_path / "theirs", HOULSBY, head_layers=2)
    pickle_folder(tmp_path / "theirs")
    assert sorted(f.name for f in (tmp_path / "theirs").iterdir() if f.suffix == ".bin") == [
        "pytorch_adapter.bin",
        "pytorch_model_head.bin",
    ]
    calls, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    model = tiny_model("bert", head="base")
    want = reference(model, HOULSBY, tensors, ids, mask)
    name = load_adapter(model, tmp_path / "theirs")
    assert calls and all(k.get("weights_only") is True for k in calls)
    assert len(calls) == 2  # each pickle read once, not once for its shapes and again for its tensors
    with torch.no_grad(), use_adapter(model, name):
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).last_hidden_state, want, atol=1e-6)
        logits = classification_logits(model, name, ids, mask)
    assert torch.allclose(logits, head_reference(want, tensors, 2), atol=1e-6)
    assert "safetensors is preferred" in caplog.text and "use_safetensors=True" in caplog.text
    assert read_adapter_config(tmp_path / "theirs")["labels"] == ["a", "b", "c"]


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda t: {**t, "extra": Payload()}, r"torch.load\(weights_only=True\) accepts"),
        (lambda t: list(t.values()), "does not hold tensor names and tensors"),
        (lambda t: {k: v.double() for k, v in t.items()}, "only float32, float16 or bfloat16"),
    ],
    ids=["code-in-the-pickle", "not-a-state-dict", "float64"],
)
def test_a_pickle_of_anything_but_float_tensors_is_refused(tmp_path, monkeypatch, content, message):
    monkeypatch.delenv("ADAPTER_STUDIO_PUBLIC", raising=False)
    monkeypatch.chdir(tmp_path)
    tensors = write_theirs(tmp_path / "theirs", HOULSBY, prefix="")
    (tmp_path / "theirs" / "adapter.safetensors").unlink()
    torch.save(content(tensors), tmp_path / "theirs" / "pytorch_adapter.bin")
    with pytest.raises(AdapterError, match=message) as err:
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs")
    assert not (tmp_path / "PWNED").exists() and str(tmp_path) not in str(err.value)


@pytest.mark.parametrize("how", ["public-studio", "space", "allow_pickle=False"])
def test_a_pickle_is_refused_in_public_mode_and_never_unpickled(tmp_path, monkeypatch, how):
    monkeypatch.delenv("ADAPTER_STUDIO_PUBLIC", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    if how == "public-studio":
        monkeypatch.setenv("ADAPTER_STUDIO_PUBLIC", "1")
    elif how == "space":
        monkeypatch.setenv("SPACE_ID", "someone/studio")
    write_theirs(tmp_path / "theirs", HOULSBY, prefix="", head_layers=2)
    pickle_folder(tmp_path / "theirs")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    kwargs = {"allow_pickle": False} if how == "allow_pickle=False" else {}
    with pytest.raises(AdapterError, match=r"pytorch_adapter.bin is a pickle file.*use_safetensors=True"):
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs", **kwargs)
    with pytest.raises(AdapterError, match="never in a public studio"):
        read_adapter_config(tmp_path / "theirs", **kwargs)


def test_a_pickled_head_beside_safetensors_weights_is_refused_in_public_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTER_STUDIO_PUBLIC", "1")
    write_theirs(tmp_path / "theirs", HOULSBY, prefix="", head_layers=1)
    head = tmp_path / "theirs" / "model_head.safetensors"
    torch.save(load_file(head), tmp_path / "theirs" / "pytorch_model_head.bin")
    head.unlink()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(AdapterError, match=r"pytorch_model_head.bin is a pickle file"):
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"head_type": "tagging"}, "head_type 'tagging'"),
        ({"use_pooler": True}, "use_pooler"),
        ({"layers": 3}, "layers=3"),
    ],
)
def test_heads_that_cannot_map_are_named(tmp_path, changes, message):
    write_theirs(tmp_path / "theirs", HOULSBY, head_layers=2)
    cfg = json.loads((tmp_path / "theirs" / "head_config.json").read_text())
    cfg["config"].update(changes)
    (tmp_path / "theirs" / "head_config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match=message):
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs")


def test_a_stray_tensor_is_refused(tmp_path):
    tensors = write_theirs(tmp_path / "theirs", HOULSBY)
    tensors["bert.invertible_adapters.task.F.0.weight"] = torch.zeros(2)
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith("heads.")}, tmp_path / "theirs" / "adapter.safetensors"
    )
    with pytest.raises(AdapterError, match="not part of a bottleneck adapter named 'task'"):
        load_adapter(tiny_model("bert", head="base"), tmp_path / "theirs")


def ours(tmp_path, config: AdapterConfig, task="classification", pooling="cls"):
    model = tiny_model("bert", head="base")
    labels = ["billing", "orders", "tech"] if task == "classification" else None
    add_adapter(model, "route", config, task=task, labels=labels, pooling=pooling if labels else None)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in adapter_parameters(model, "route").values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model, save_adapter(model, "route", tmp_path / "ours", extra={"base_model": str(tmp_path / "models/bert")})


@pytest.mark.parametrize(
    "config, task",
    [
        (AdapterConfig(bottleneck=5), "classification"),
        (AdapterConfig(bottleneck=7, placement="pfeiffer", activation="tanh"), "instruction"),
        (AdapterConfig(bottleneck=6, placement="parallel", activation="relu", leave_out=[1]), "classification"),
    ],
)
def test_export_writes_their_format_and_reads_back_the_same(tmp_path, batch, config, task):
    ids, mask = batch
    model, folder = ours(tmp_path, config, task)
    out = export_adapterhub(folder, tmp_path / "export")
    files = {p.name for p in out.iterdir()}
    head = {"head_config.json", "model_head.safetensors"} if task == "classification" else set()
    assert files == {"adapter_config.json", "adapter.safetensors", "README.md"} | head
    cfg = json.loads((out / "adapter_config.json").read_text())
    their = cfg["config"]
    r = config.bottleneck
    assert int(HIDDEN // their["reduction_factor"]) == r and cfg["version"] == "adapters.1.3.0"
    assert their["original_ln_before"] is False and their["non_linearity"] == config.activation
    assert their["is_parallel"] == (config.placement == "parallel") and their["leave_out"] == config.leave_out
    assert their["mh_adapter"] == (config.placement != "pfeiffer") and their["output_adapter"] is True
    assert str(tmp_path) not in (out / "adapter_config.json").read_text() + (out / "README.md").read_text()
    keys = set(load_file(out / "adapter.safetensors"))
    assert "bert.encoder.layer.0.output.adapters.route.adapter_down.0.weight" in keys
    if task == "classification":
        assert set(load_file(out / "model_head.safetensors")) == {"heads.route.1.weight", "heads.route.1.bias"}
    # Their tensors under their semantics give our outputs.
    tensors = load_file(out / "adapter.safetensors")
    want = reference(tiny_model("bert", head="base"), their, tensors, ids, mask, name="route")
    with torch.no_grad(), use_adapter(model, "route"):
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).last_hidden_state, want, atol=1e-6)
    again = tiny_model("bert", head="base")
    load_adapter(again, out, name="back")
    if task == "classification":
        with torch.no_grad():
            assert torch.allclose(
                classification_logits(again, "back", ids, mask),
                classification_logits(model, "route", ids, mask),
                atol=1e-6,
            )


def test_an_imported_two_layer_head_saves_exports_and_reloads(tmp_path, batch):
    ids, mask = batch
    tensors = write_theirs(tmp_path / "theirs", HOULSBY, head_layers=2)
    model = tiny_model("bert", head="base")
    load_adapter(model, tmp_path / "theirs", name="task")
    saved = save_adapter(model, "task", tmp_path / "saved")
    assert json.loads((saved / "adapter_config.json").read_text())["head"] == {"type": "mlp", "activation": "tanh"}
    out = export_adapterhub(saved, tmp_path / "again")
    assert load_file(out / "model_head.safetensors").keys() == {k for k in tensors if k.startswith("heads.")}
    for source in (saved, out):
        fresh = tiny_model("bert", head="base")
        load_adapter(fresh, source, name="copy")
        with torch.no_grad():
            assert torch.allclose(
                classification_logits(fresh, "copy", ids, mask), classification_logits(model, "task", ids, mask)
            )


def test_export_names_what_does_not_map(tmp_path):
    _, folder = ours(tmp_path, AdapterConfig(bottleneck=4), pooling="mean")
    with pytest.raises(AdapterError, match="pooling 'mean'.*export without the head"):
        export_adapterhub(folder, tmp_path / "x")
    out = export_adapterhub(folder, tmp_path / "x", with_head=False)
    assert not (out / "head_config.json").exists()
    model = tiny_model("llama")
    add_adapter(model, "chat", AdapterConfig(bottleneck=4), task="instruction")
    with pytest.raises(AdapterError, match="base model type 'llama'"):
        export_adapterhub(save_adapter(model, "chat", tmp_path / "chat"), tmp_path / "y")


def test_a_default_encoder_classifier_pools_the_first_token_and_exports_with_its_head(tmp_path):
    model, folder = ours(tmp_path, AdapterConfig(bottleneck=4), pooling=None)  # no pooling asked for
    assert get_record(model, "route").pooling == "cls"
    out = export_adapterhub(folder, tmp_path / "x")
    assert (out / "head_config.json").is_file()
    decoder = tiny_model("llama")
    add_adapter(decoder, "d", AdapterConfig(bottleneck=4), task="classification", labels=["a", "b"])
    assert get_record(decoder, "d").pooling == "last"


@pytest.mark.parametrize("hidden", [32, 384, 768, 1024, 4096])
def test_their_reduction_factor_gives_back_our_bottleneck(hidden):
    assert all(int(hidden // reduction_factor(hidden, r)) == r for r in range(1, hidden + 1))


# Written once by the real adapters 1.3.0's default save_adapter (bench/make_pickled_fixture.py; see its README).
PICKLED = ROOT / "tests" / "fixtures" / "adapterhub_pickled"


@pytest.fixture(scope="module")
def minilm():
    return load_base("minilm").model


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def test_their_pickled_default_save_gives_their_outputs(minilm, monkeypatch, caplog):
    """Their real default save, not one we pickled ourselves: their names, their head config, their pickle."""
    monkeypatch.delenv("ADAPTER_STUDIO_PUBLIC", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    theirs = json.loads((PICKLED / "outputs.json").read_text())
    ids, mask = torch.tensor(theirs["input_ids"]), torch.tensor(theirs["attention_mask"])
    calls, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    name = load_adapter(minilm, PICKLED / "adapter")
    assert len(calls) == 2 and all(k.get("weights_only") is True for k in calls)
    assert "safetensors is preferred" in caplog.text
    with torch.no_grad():
        logits = classification_logits(minilm, name, ids, mask)
        hidden = {}
        for which in (name, None):
            with use_adapter(minilm, which):
                hidden[which] = masked_mean(minilm(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
    assert (logits - torch.tensor(theirs["logits"])).abs().max() < 1e-5
    assert (hidden[name] - torch.tensor(theirs["mean_last_hidden"])).abs().max() < 1e-5
    assert (hidden[name] - hidden[None]).abs().max() > 0.1  # a do-nothing adapter would match without any loading
    assert read_adapter_config(PICKLED / "adapter")["labels"] == theirs["labels"]


@pytest.mark.parametrize("how", ["public-studio", "allow_pickle=False"])
def test_their_pickled_default_save_is_refused_in_public_mode(minilm, monkeypatch, how):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("ADAPTER_STUDIO_PUBLIC", "1" if how == "public-studio" else "0")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    kwargs = {"allow_pickle": False} if how == "allow_pickle=False" else {}
    with pytest.raises(AdapterError, match=r"pytorch_adapter.bin is a pickle file.*use_safetensors=True"):
        load_adapter(minilm, PICKLED / "adapter", name="refused", **kwargs)
    with pytest.raises(AdapterError, match="never in a public studio"):
        read_adapter_config(PICKLED / "adapter", **kwargs)


VENV = ROOT / "bench" / ".venv-adapterhub"


@pytest.mark.slow
@pytest.mark.skipif(
    not VENV.exists(),
    reason="needs bench/.venv-adapterhub (adapters 1.3.0); bench/adapterhub.py or bench/adapterhub_roundtrip.py builds it",
)
def test_round_trip_against_the_real_adapters_package():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "adapterhub_roundtrip.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's adapter_core, not an installed one
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and result["ok"], done.stdout[-2000:] + done.stderr[-2000:]
    assert len(result["cases"]) == 14 and all(c["max_abs_diff"] <= 1e-5 for c in result["cases"])
    assert any(c["case"] == "import pickled" for c in result["cases"])  # their default save, loaded locally
    assert "original_ln_before=True" in result["refusals"]["pfeiffer_default"]
    assert "use_safetensors=True" in result["refusals"]["pickled_public"]
