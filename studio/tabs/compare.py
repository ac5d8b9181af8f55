"""Tab 6, Compare: 2-4 adapters (and the base) on one input, their curves, sizes and test scores."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .. import comparison as c
from ..hardware import gpu
from .common import Ctx, friendly, who


def build(ctx: Ctx) -> None:
    with gr.Tab("6 · Compare", id="compare"):
        cmp_sel = gr.Dropdown([], multiselect=True, label="Adapters (2 to 4)", allow_custom_value=True)
        cmp_base = gr.Checkbox(label="Include the bare base model (instruction adapters)")
        cmp_text = gr.Textbox(label="Input")
        cmp_go = gr.Button("Run side by side", variant="primary")
        with gr.Row():
            cmp_cols = [gr.Markdown() for _ in range(5)]
        cmp_plot = gr.Plot(label="Loss curves")
        cmp_table = gr.Dataframe(
            pd.DataFrame(columns=c.COMPARE_COLUMNS), label="Adapters", interactive=False, wrap=True
        )
        cmp_file = gr.File(label="Labelled test file", file_types=[".csv", ".tsv", ".jsonl"], type="filepath")
        cmp_eval = gr.Button("Evaluate all on the test file")
        cmp_scores = gr.Dataframe(
            pd.DataFrame(columns=["adapter", "accuracy", "macro_f1", "rows"]),
            label="Test scores (macro-F1: the F1 score averaged over labels, so rare labels count as much as common ones)",
            interactive=False,
            wrap=True,
        )
    ctx.add(cmp_sel=cmp_sel, cmp_base=cmp_base, cmp_text=cmp_text, cmp_go=cmp_go, cmp_cols=cmp_cols)
    ctx.add(cmp_plot=cmp_plot, cmp_table=cmp_table, cmp_file=cmp_file, cmp_eval=cmp_eval, cmp_scores=cmp_scores)


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    @gpu
    def compare(owner, adapters: list[str], with_base: bool, text: str, request: gr.Request):
        owner = who(studio, owner, request)
        outs = c.compare_outputs(studio, owner, adapters, text, with_base)
        cols = [gr.update(value=o, visible=True) for o in outs]
        cols += [gr.update(value="", visible=False)] * (5 - len(cols))
        return [*cols, c.compare_curves(studio, owner, adapters), c.compare_table(studio, owner, adapters)]

    ctx["cmp_go"].click(
        friendly(compare),
        [ctx.owner, ctx["cmp_sel"], ctx["cmp_base"], ctx["cmp_text"]],
        [*ctx["cmp_cols"], ctx["cmp_plot"], ctx["cmp_table"]],
        api_name="compare",
    )

    def selected(owner, adapters, request: gr.Request):
        owner = who(studio, owner, request)
        return c.compare_curves(studio, owner, adapters or []), c.compare_table(studio, owner, adapters or [])

    ctx["cmp_sel"].change(
        friendly(selected), [ctx.owner, ctx["cmp_sel"]], [ctx["cmp_plot"], ctx["cmp_table"]], api_visibility="private"
    )

    @gpu
    def evaluate(owner, adapters: list[str], test_file: str, request: gr.Request):
        return c.compare_evaluate(studio, who(studio, owner, request), adapters, test_file)

    ctx["cmp_eval"].click(
        friendly(evaluate), [ctx.owner, ctx["cmp_sel"], ctx["cmp_file"]], ctx["cmp_scores"], api_name="evaluate"
    )
