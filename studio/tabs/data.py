"""Tab 2, Data: a bundled sample or an upload, its column mapping, preview and validation summary.

The loaded file lives in `ctx.source` (server-side state); the page shows only its name, and no
handler takes a path from the client.
"""

from __future__ import annotations

import gradio as gr

from .. import handlers as h
from .common import COLUMNS, Ctx, friendly


def build(ctx: Ctx) -> None:
    with gr.Tab("2 · Data", id="data"):
        task = gr.Radio(
            ["classification", "instruction"],
            value="classification",
            label="Task",
            info="classification: (text, label) · instruction: (instruction, response)",
        )
        with gr.Row():
            sample = gr.Dropdown(list(h.SAMPLES), value=list(h.SAMPLES)[0], label="Bundled sample", scale=3)
            use_sample = gr.Button("Use this sample", scale=1)
        upload = gr.File(
            label="…or upload CSV / TSV / JSONL (50 MB max)", file_types=[".csv", ".tsv", ".jsonl"], type="filepath"
        )
        data_name = gr.Textbox(label="Data file", interactive=False)
        with gr.Row():
            column_boxes = {
                c: gr.Dropdown([], label=f"{c} column", allow_custom_value=True, visible=c in ("text", "label"))
                for c in COLUMNS
            }
        data_md = gr.Markdown()
        preview = gr.Dataframe(label="Preview (first 20 rows)", interactive=False, max_height=320)
    ctx.add(task=task, columns=column_boxes, sample=sample, use_sample=use_sample, upload=upload)
    ctx.add(data_name=data_name, data_md=data_md, preview=preview)


def wire(ctx: Ctx) -> None:
    studio, base, max_length, task = ctx.studio, ctx["base"], ctx["max_length"], ctx["task"]
    column_boxes = ctx["columns"]
    shown = [ctx["data_md"], ctx["preview"], ctx.labels, *column_boxes.values()]

    def show(source, task_, base_model, max_len, mapping):
        info = h.describe_data(studio, source, task_, mapping, base_model, max_len)
        fields = h.detected_fields(task_)
        boxes = [gr.update(choices=info["columns"], value=info["mapping"].get(c), visible=c in fields) for c in COLUMNS]
        return [info["summary"], info["preview"], info["labels"], *boxes]

    def use_bundled_sample(sample_name: str, base_model: str, max_length: int):
        source = h.sample_source(sample_name)
        return [source, source["name"], source["task"], *show(source, source["task"], base_model, max_length, {})]

    def load_data(file: str, task_: str, base_model: str, max_length: int):
        source = h.upload_source(studio, file)
        return [source, source["name"], *show(source, task_, base_model, max_length, {})]

    def reread(source, task_, base_model, max_length):
        if not source:
            return ["", None, [], *[gr.update()] * len(COLUMNS)]
        return show(source, task_, base_model, max_length, {})

    def remap(source, task_, base_model, max_length, *cols):
        return show(source, task_, base_model, max_length, {c: v for c, v in zip(COLUMNS, cols, strict=True) if v})

    ctx["use_sample"].click(
        friendly(use_bundled_sample),
        [ctx["sample"], base, max_length],
        [ctx.source, ctx["data_name"], task, *shown],
        api_name="use_sample",
    )
    ctx["upload"].upload(
        friendly(load_data),
        [ctx["upload"], task, base, max_length],
        [ctx.source, ctx["data_name"], *shown],
        api_name="load_data",
    )
    task.input(friendly(reread), [ctx.source, task, base, max_length], shown, api_visibility="private")
    for box in column_boxes.values():
        box.input(
            friendly(remap),
            [ctx.source, task, base, max_length, *column_boxes.values()],
            shown,
            api_visibility="private",
        )
