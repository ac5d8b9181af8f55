"""Tab 6, Compare: 2-4 adapters (and the base) on one input, their curves, sizes and test scores with a
confusion matrix each; and every finished run, baselines included, on the accuracy/size trade-off."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .. import comparison as c
from .. import report_view as rv
from .. import runs_view as rs
from ..hardware import gpu
from .common import Ctx, friendly, table_file, who

MAX_MATRICES = 4  # Compare takes at most 4 adapters


def build(ctx: Ctx) -> None:
    with gr.Tab("6 · Compare", id="compare") as tab:
        cmp_sel = gr.Dropdown([], multiselect=True, label="Adapters (2 to 4)", allow_custom_value=True)
        cmp_base = gr.Checkbox(label="Include the bare base model (instruction adapters)")
        cmp_text = gr.Textbox(label="Input")
        cmp_go = gr.Button("Run side by side", variant="primary")
        with gr.Row():
            cmp_cols = [gr.Markdown() for _ in range(5)]
        cmp_plot = gr.Plot(label="Loss curves")
        cmp_table = gr.Dataframe(
            pd.DataFrame(columns=c.COMPARE_COLUMNS),
            label="Adapters: sizes, and the figures of their training (val: its validation split)",
            interactive=False,
            wrap=True,
        )
        cmp_file = table_file("Labelled test file")
        cmp_oos = gr.Textbox(
            label="Label of its out-of-scope rows (optional, routers)",
            placeholder="oos",
            info="Rows with this label belong to no department: each router is also scored on setting them apart.",
        )
        cmp_eval = gr.Button("Evaluate all on the test file")
        cmp_scores = gr.Dataframe(
            pd.DataFrame(columns=["adapter", "accuracy", "macro_f1", "rows"]),
            label="Test scores (F1 averaged over labels: rare labels count as much as common ones)",
            interactive=False,
            wrap=True,
        )
        cmp_answer_note = gr.Markdown()  # instruction adapters: how their answers were made and scored
        with gr.Row():
            cmp_matrices = [gr.Plot(visible=False, label="Confusion matrix") for _ in range(MAX_MATRICES)]
        cmp_per_class = gr.Dataframe(
            rv.per_class_table(None, adapter=""),
            label="Per class on the test file",
            interactive=False,
            wrap=True,
            visible=False,
        )
        with gr.Accordion("Runs: every finished run, baselines included", open=True):
            gr.Markdown(
                "Every run you finished, including full fine-tunes (which keep no adapter) and head-only runs. "
                "The scatter is Houlsby et al.'s trade-off on your data: validation accuracy against the "
                "parameters each run trained (log scale); a bigger marker took longer to train."
            )
            runs_refresh = gr.Button("Refresh runs")
            with gr.Row():
                runs_tradeoff = gr.Plot(label="Accuracy against trainable parameters", scale=3)
                runs_timing = gr.Plot(label="Accuracy against training time", scale=2)
            runs_table = gr.Dataframe(
                pd.DataFrame(columns=rs.RUN_COLUMNS), label="Finished runs", interactive=False, wrap=True
            )
            runs_pick = gr.Dropdown([], multiselect=True, label="Runs to overlay (up to 8)")
            runs_curves = gr.Plot(label="Their loss curves")
    ctx.add(cmp_matrices=cmp_matrices, cmp_per_class=cmp_per_class, compare_tab=tab, cmp_answer_note=cmp_answer_note)
    ctx.add(cmp_oos=cmp_oos)
    ctx.add(runs_refresh=runs_refresh, runs_tradeoff=runs_tradeoff, runs_timing=runs_timing)
    ctx.add(runs_table=runs_table, runs_pick=runs_pick, runs_curves=runs_curves)
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
    def evaluate(owner, adapters: list[str], test_file: str, oos_label: str, request: gr.Request):
        """The selected adapters on a labelled test file: scores; for classification adapters also one
        confusion matrix each and their per-class precision, recall, F1 and support; for instruction
        adapters also their answers' scores (ROUGE-L, chrF, exact match, loops, cut answers) beside the
        bare base's, and how the answers were made. With `oos_label`, that label's rows are out-of-scope
        messages, and each router's row also says how its saved decision sets them apart."""
        result = c.compare_evaluation(studio, who(studio, owner, request), adapters, test_file, oos_label)
        figures = result["matrices"]
        plots = [gr.update(value=figures[i], visible=True) if i < len(figures) else gr.update(visible=False, value=None)
                 for i in range(MAX_MATRICES)]  # fmt: skip
        per_class = gr.update(value=result["per_class"], visible=bool(figures))
        return [result["scores"], per_class, *plots, result["answer_note"]]

    ctx["cmp_eval"].click(
        friendly(evaluate),
        [ctx.owner, ctx["cmp_sel"], ctx["cmp_file"], ctx["cmp_oos"]],
        [ctx["cmp_scores"], ctx["cmp_per_class"], *ctx["cmp_matrices"], ctx["cmp_answer_note"]],
        api_name="evaluate",
    )

    def finished_runs(owner, request: gr.Request):
        view = rs.compare_runs(studio, who(studio, owner, request))
        picked = view["choices"][:4]
        return view["tradeoff"], view["timing"], view["table"], gr.update(choices=view["choices"], value=picked)

    runs_outputs = [ctx["runs_tradeoff"], ctx["runs_timing"], ctx["runs_table"], ctx["runs_pick"]]
    for trigger in (ctx["compare_tab"].select, ctx["runs_refresh"].click):
        trigger(friendly(finished_runs), ctx.owner, runs_outputs, api_visibility="private")

    def curves(owner, run_ids, request: gr.Request):
        return rs.run_curves(studio, who(studio, owner, request), run_ids)

    ctx["runs_pick"].change(
        friendly(curves), [ctx.owner, ctx["runs_pick"]], ctx["runs_curves"], api_visibility="private"
    )
