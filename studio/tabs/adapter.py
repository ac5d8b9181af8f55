"""Tab 3, Adapter: the bottleneck and training settings, with presets and a live size estimate."""

from __future__ import annotations

import gradio as gr

from .. import handlers as h
from .common import Ctx, friendly


def build(ctx: Ctx) -> None:
    policy = ctx.studio.policy
    with gr.Tab("3 · Adapter", id="adapter"):
        preset = gr.Radio(list(h.PRESETS), label="Preset", value="Balanced (r=64, 4 epochs)")
        with gr.Row():
            bottleneck = gr.Slider(4, min(512, policy.max_bottleneck), value=64, step=4, label="Bottleneck size r")
            placement = gr.Dropdown(["houlsby", "pfeiffer", "parallel"], value="houlsby", label="Placement")
            activation = gr.Dropdown(["gelu", "relu", "swish", "tanh"], value="gelu", label="Activation")
        with gr.Row():
            lr = gr.Number(2e-3, label="Learning rate")
            epochs = gr.Number(4, label="Epochs", minimum=0.05, maximum=policy.max_epochs)
            batch = gr.Slider(1, min(128, policy.max_batch_size), value=32, step=1, label="Batch size")
            max_length = gr.Slider(16, min(1024, policy.max_length), value=128, step=16, label="Max length (tokens)")
            seed = gr.Number(42, label="Seed", precision=0, minimum=0)
        name = gr.Textbox(
            label="Adapter name",
            placeholder="e.g. routing (default: file name + r); letters, digits, spaces, '_' and '-'",
        )
        estimate_md = gr.Markdown()
    ctx.add(
        preset=preset,
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
    )


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    def apply_preset(p):
        s = h.PRESETS[p]
        return s["bottleneck"], s["epochs"], s["lr"]

    ctx["preset"].input(
        apply_preset, ctx["preset"], [ctx["bottleneck"], ctx["epochs"], ctx["lr"]], api_visibility="private"
    )

    def estimate(base_model, bottleneck, placement, labels):
        return h.estimate(studio, base_model, bottleneck, placement, len(labels or []))

    for trigger in (ctx["bottleneck"].change, ctx["placement"].change, ctx.labels.change, ctx["load"].click):
        trigger(
            friendly(estimate),
            [ctx["base"], ctx["bottleneck"], ctx["placement"], ctx.labels],
            ctx["estimate_md"],
            api_visibility="private",
        )
