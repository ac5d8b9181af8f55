"""A setting declared once reaches every surface: the CLI's flag and --help, the studio's inputs and its
API, the checks, and the training run itself. Exposing weight_decay and warmup_ratio was only their
declarations in adapter_core/engine/config.py."""

import gradio as gr
import pytest
from helpers import tiny_model
from transformers import AutoTokenizer

from adapter_core import AdapterError
from adapter_core.catalog import CATALOG, Base, embedded_path
from adapter_core.cli import build_parser, train_config
from adapter_core.engine.config import TrainConfig, training_settings
from adapter_core.engine.setup import setup
from adapter_core.placement import model_family
from adapter_core.settings import Bounds, check_value
from adapter_core.state import ensure_state
from studio import settings as st
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.ui import build_app

ROUTING = str(SAMPLES_DIR / "support_routing.csv")
SOURCE = {"path": ROUTING, "name": "support_routing.csv", "task": "classification", "ready": True}


def test_the_declarations_reach_the_cli_flags_and_help():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    for flag in ("--weight-decay", "--warmup-ratio"):
        assert flag in text
    decay = next(a for a in train._actions if a.dest == "weight_decay")
    assert decay.help.startswith(training_settings()["weight_decay"].help) and decay.default == 0.01
    args = parser.parse_args(
        ["train", "--data", "d.csv", "--out", "o", "--weight-decay", "0.05", "--warmup-ratio", "0.2"]
    )
    config = train_config(args)
    assert (config.weight_decay, config.warmup_ratio) == (0.05, 0.2)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d.csv", "--out", "o", "--weight-decay", "heavy"])
    with pytest.raises(AdapterError, match="warmup_ratio must be at least 0 and below 1; got 1.5"):
        TrainConfig(data="d.csv", warmup_ratio=1.5).check()


def test_every_setting_keeps_its_flag_type_default_and_choices():
    """Flags generated from the declarations are the ones the CLI always had."""
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert actions["bottleneck"].default == "auto" and actions["bottleneck"].type("auto") is None
    assert actions["batch_size"].type("8") == 8 and actions["epochs"].type("0.5") == 0.5
    assert actions["preset"].type("quick-look") == "Quick look" and actions["preset"].choices == [
        "Quick look", "Balanced", "Capacity",
    ]  # fmt: skip
    assert actions["placement"].choices == ["houlsby", "pfeiffer", "parallel"]
    assert actions["early_stopping_patience"].option_strings == ["--early-stopping-patience"]
    assert actions["init_from"].option_strings == ["--init-from"] and actions["leave_out"].type("0,1") == [0, 1]
    assert actions["text_column"].default is None and actions["base_dropout"].default is False


def advanced_inputs(demo: gr.Blocks) -> dict[str, gr.components.Component]:
    """The components inside the Adapter tab's "Advanced adapter options" accordion, by label."""
    accordion = next(b for b in demo.blocks.values() if isinstance(b, gr.Accordion) and "Advanced" in b.label)
    return components_in(accordion, into_accordions=True)


def test_the_studio_shows_checks_and_passes_on_a_declared_setting(tmp_path):
    studio = Studio(tmp_path, policy=Policy.local())
    demo = build_app(studio)
    advanced = advanced_inputs(demo)
    assert advanced["Weight decay"].value == 0.01 and advanced["Weight decay"].info.startswith("AdamW's weight decay")
    assert advanced["Warmup ratio"].value == 0.06 and advanced["Warmup ratio"].maximum == 1
    api = demo.get_api_info()["named_endpoints"]
    for endpoint in ("/start_training", "/sweep"):
        params = {p["parameter_name"]: p for p in api[endpoint]["parameters"]}
        assert params["weight_decay"]["parameter_default"] == 0.01 and params["warmup_ratio"]["label"] == "Warmup ratio"
    settings = {"bottleneck": 8, "weight_decay": 0.05, "warmup_ratio": "0.2", "auto": True}
    config = st.train_config("minilm", SOURCE, "classification", {}, "decay", settings)
    assert (config.weight_decay, config.warmup_ratio) == (0.05, 0.2)
    with pytest.raises(AdapterError, match="Weight decay must be zero or more; got -1"):
        st.train_config("minilm", SOURCE, "classification", {}, "decay", {**settings, "weight_decay": -1})
    studio.jobs.close()


def components_in(block, into_accordions: bool) -> dict[str, gr.components.Component]:
    """The components under `block` by label; with `into_accordions` False, those outside its accordions."""
    found, todo = {}, list(block.children)
    while todo:
        child = todo.pop()
        if isinstance(child, gr.Accordion) and not into_accordions:
            continue
        todo += getattr(child, "children", [])
        if isinstance(child, gr.components.Component):
            found[child.label] = child
    return found


def test_the_adapter_tabs_first_screen_is_plain_words_and_the_rest_is_advanced(tmp_path):
    studio = Studio(tmp_path, policy=Policy.local())
    demo = build_app(studio)
    tab = next(b for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.id == "adapter")
    first = components_in(tab, into_accordions=False)
    assert {"Preset", "Adapter size", "Adapter name"} <= set(first)
    assert first["Adapter size"].value == 64 and first["Adapter size"].info.startswith("Medium adapter, r = 64. ")
    accordion = next(b for b in demo.blocks.values() if isinstance(b, gr.Accordion) and "Advanced" in b.label)
    assert accordion.open is False
    moved = ["Where the adapter sits", "Activation function", "Output scaling", "Random seed"]
    moved += ["Stop early after N evaluations without progress", "Experiment tracker"]
    advanced = advanced_inputs(demo)
    assert set(moved) <= set(advanced) and not set(moved) & set(first)
    placement = advanced["Where the adapter sits"]
    assert ("After feed-forward only (Pfeiffer)", "pfeiffer") in placement.choices and placement.value == "houlsby"
    assert all(advanced[label].info for label in moved)
    # The same values reach training, by label (the picker) or by value (an API caller).
    values = {"placement": "pfeiffer", "activation": "relu", "scaling": 2.0, "seed": 7, "patience": 3}
    config = st.train_config("minilm", SOURCE, "classification", {}, "moved", {**values, "report_to": "TensorBoard"})
    assert (config.adapter.placement, config.adapter.activation, config.adapter.scaling) == ("pfeiffer", "relu", 2.0)
    assert (config.seed, config.early_stopping_patience, config.report_to) == (7, 3, "tensorboard")
    labelled = st.train_config("minilm", SOURCE, "classification", {}, "x", {"placement": "Beside them (parallel)"})
    assert labelled.adapter.placement == "parallel"
    studio.jobs.close()


def test_the_optimizer_and_schedule_take_the_declared_setting(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_path(CATALOG["minilm"])))
    model = tiny_model("bert", head="base")
    model.resize_token_embeddings(len(tokenizer))
    ensure_state(model, model_family(model)).base_name = "minilm"
    base = Base("minilm", model, tokenizer, model_family(model))
    flags = ["--weight-decay", "0.05", "--warmup-ratio", "0.4", "--max-steps", "10", "--batch-size", "32"]
    flags += ["--epochs", "1", "--lr", "1e-3", "--max-length", "32", "--data", ROUTING, "--out", str(tmp_path)]
    config = train_config(build_parser().parse_args(["train", *flags]))  # from the command line to the optimizer
    recipe = setup(config, tmp_path, lambda e: None, base)
    assert recipe.optimizer.param_groups[0]["weight_decay"] == 0.05
    warm = recipe.scheduler.lr_lambdas[0]
    assert recipe.total == 10 and warm(0) == 0 and warm(3) < 1 and warm(4) == 1  # 0.4 x 10 steps of warmup


def test_bounds_are_said_as_they_are_declared():
    assert Bounds(0, low_open=True).words(whole=False) == "a positive number"
    assert Bounds(0, 0.5, True, True).words(whole=False) == "between 0 and 0.5"
    assert Bounds(0, 100).words(whole=True) == "from 0 to 100"
    patience = training_settings()["early_stopping_patience"]
    with pytest.raises(AdapterError, match="early_stopping_patience must be from 0 to 100; got 101"):
        check_value(patience, 101)
    with pytest.raises(AdapterError, match="lr must be a positive number; got nan"):
        check_value(training_settings()["lr"], float("nan"))
