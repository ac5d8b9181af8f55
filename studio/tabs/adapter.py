"""Tab 3, Adapter: what trains (adapter, head only, full fine-tuning), the bottleneck and training settings,
with presets and a live size estimate; early stopping, tracking and the advanced adapter options."""

from __future__ import annotations

import gradio as gr

from .. import settings as st
from .. import train_view as h
from .common import Ctx, friendly, who

FRESH = ("a fresh adapter", "")  # Continue training from: nothing


def build(ctx: Ctx) -> None:
    policy = ctx.studio.policy
    with gr.Tab("3 · Adapter", id="adapter"):
        preset = gr.Radio(
            [*h.PRESETS, h.CUSTOM],
            label="Preset",
            value=h.DEFAULT_PRESET,
            info=" · ".join(f"{p.name}: {p.description}" for p in h.PRESETS.values())
            + " Changing a setting below makes it Custom.",
        )
        with gr.Row():
            bottleneck = gr.Slider(
                4,
                min(512, policy.max_bottleneck),
                value=64,
                step=4,
                label="Bottleneck size r",
                info="Width of each adapter: larger learns more, trains slower and takes more disk",
            )
            placement = gr.Dropdown(
                ["houlsby", "pfeiffer", "parallel"],
                value="houlsby",
                label="Placement",
                info="houlsby: after attention and feed-forward (Houlsby 2019) · pfeiffer: after "
                "feed-forward only, half the size (Pfeiffer 2020) · parallel: beside each sub-layer (He 2022)",
            )
            activation = gr.Dropdown(
                ["gelu", "relu", "swish", "tanh"],
                value="gelu",
                label="Activation",
                info="The non-linearity inside the bottleneck; gelu is a safe choice",
            )
        mode = gr.Radio(list(st.MODES), value="Adapter", label="What trains", info=st.MODE_HELP)
        auto = gr.Checkbox(
            True,
            label="Size the run from the data (recommended)",
            info="Picks batch size, epochs and learning rate so that even a small file gets enough "
            "optimizer steps to learn (the Train tab shows them); untick to set them yourself",
        )
        with gr.Row():
            lr = gr.Number(2e-3, label="Learning rate", info="Step size of each update", visible=False)
            epochs = gr.Number(
                4,
                label="Epochs",
                minimum=0.05,
                maximum=policy.max_epochs,
                info="Passes over the training rows",
                visible=False,
            )
            batch = gr.Slider(
                1,
                min(128, policy.max_batch_size),
                value=32,
                step=1,
                label="Batch size",
                info="Rows per optimizer step",
                visible=False,
            )
        with gr.Row():
            max_length = gr.Slider(
                16,
                min(1024, policy.max_length),
                value=128,
                step=16,
                label="Max length (tokens)",
                info="Longer examples are cut; the Data tab shows how many",
            )
            seed = gr.Number(42, label="Seed", precision=0, minimum=0, info="Same seed, same run")
        with gr.Row():
            patience = gr.Number(
                0,
                label="Early stopping: patience",
                precision=0,
                minimum=0,
                maximum=100,
                info="Stop after this many evaluations without a better validation score (0: never); "
                "the best checkpoint is kept",
            )
            report_to = gr.Dropdown(
                st.report_choices(policy.public),
                value="none",
                label="Report to",
                info=st.report_help(policy.public),
            )
        with gr.Accordion("Advanced adapter options", open=False), gr.Row():
            init = gr.Dropdown(
                list(st.INITS),
                value="normal",
                label="Initialisation",
                info="How the down-projection starts; the up-projection starts at zero, so every choice "
                "begins as the unchanged base",
            )
            scaling = gr.Number(
                None,
                label="Scaling s",
                minimum=0,
                info="Multiplies the adapter's output; 0 or empty: the default, 1 (4 for parallel, as He et al. 2022)",
            )
            leave_out = gr.Textbox(
                "",
                label="Layers to leave out",
                placeholder="e.g. 0, 1",
                info="Layers (counted from 0) that get no adapter; fewer layers, fewer parameters",
            )
            continue_from = gr.Dropdown(
                [FRESH],
                value="",
                label="Continue training from",
                info="An adapter of your library to go on training on this data (it keeps its own size and "
                "head); empty: a fresh adapter",
                allow_custom_value=True,
            )
        name = gr.Textbox(
            label="Adapter name",
            placeholder="e.g. routing (default: file name + r); letters, digits, spaces, '_' and '-'",
        )
        estimate_md = gr.Markdown()
    ctx.add(
        preset=preset,
        auto=auto,
        bottleneck=bottleneck,
        placement=placement,
        activation=activation,
        lr=lr,
        epochs=epochs,
        batch=batch,
        max_length=max_length,
        seed=seed,
        name=name,
        estimate_md=estimate_md,
        mode=mode,
        patience=patience,
        report_to=report_to,
        init=init,
        scaling=scaling,
        leave_out=leave_out,
        continue_from=continue_from,
    )


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    def apply_preset(p):
        if p not in h.PRESETS:
            return [gr.update()] * 3
        preset = h.PRESETS[p]  # with auto on, the run summary shows the epochs and rate it chooses
        return preset.bottleneck, preset.epochs, gr.update()

    ctx["preset"].input(
        apply_preset, ctx["preset"], [ctx["bottleneck"], ctx["epochs"], ctx["lr"]], api_visibility="private"
    )
    for setting in ("bottleneck", "lr", "epochs", "batch", "placement", "activation"):
        ctx[setting].input(lambda: h.CUSTOM, None, ctx["preset"], api_visibility="private")

    def toggle_auto(auto):  # on auto the run summary (Train tab) names the values it chooses
        return [gr.update(visible=not auto)] * 3

    ctx["auto"].input(toggle_auto, ctx["auto"], [ctx["lr"], ctx["epochs"], ctx["batch"]], api_visibility="private")

    def estimate(base_model, bottleneck, placement, labels, mode, leave_out):
        settings = {"mode": mode, "leave_out": leave_out}
        return h.estimate(studio, base_model, bottleneck, placement, len(labels or []), settings)

    inputs = [ctx["base"], ctx["bottleneck"], ctx["placement"], ctx.labels, ctx["mode"], ctx["leave_out"]]
    triggers = [ctx[k].change for k in ("bottleneck", "placement", "mode")] + [ctx.labels.change, ctx["load"].click]
    gr.on(
        [*triggers, ctx["leave_out"].blur, ctx["leave_out"].submit],
        friendly(estimate),
        inputs,
        ctx["estimate_md"],
        api_visibility="private",
    )

    def library_choices(owner, task, request: gr.Request):
        owner = who(studio, owner, request)
        names = studio.library.names(task or "classification", owner=studio.owner(owner))
        return gr.update(choices=[FRESH, *((n, n) for n in names)])

    ctx["continue_from"].focus(
        friendly(library_choices), [ctx.owner, ctx["task"]], ctx["continue_from"], api_visibility="private"
    )
