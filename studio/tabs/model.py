"""Tab 1, Model: pick a base model and see what it is."""

from __future__ import annotations

import gradio as gr

from .. import train_view as h
from .common import Ctx, friendly


def build(ctx: Ctx) -> None:
    studio = ctx.studio
    choices = h.model_choices(studio)
    info = (
        "The models this public studio serves"
        if studio.policy.public
        else "Embedded models work offline; or type a hub id or local path"
    )
    with gr.Tab("1 · Model", id="model"):
        with gr.Row():
            base = gr.Dropdown(
                choices,
                value=choices[0],
                allow_custom_value=True,  # the policy refuses what is not allowed, with a message
                scale=3,
                label="Base model",
                info=info,
            )
            load = gr.Button("Load model", variant="primary", scale=1)
        model_md = gr.Markdown("Pick a model and press **Load model**.")

    ctx.add(base=base, load=load, model_md=model_md)


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    def load_model(base_model: str) -> str:
        return h.describe_model(studio, base_model)

    ctx["load"].click(friendly(load_model), ctx["base"], ctx["model_md"], api_name="load_model")
