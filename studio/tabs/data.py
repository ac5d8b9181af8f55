"""Tab 2, Data: a bundled sample, an upload or a Hub dataset (`hub_view`), its column mapping, preview and validation summary, and for
instruction data one training example token by token (what the model reads, what carries the loss, what
max length cuts).

The loaded file lives in `ctx.source` (server-side state); the page shows only its name, and no
handler takes a path from the client.
"""

from __future__ import annotations

import gradio as gr

from .. import data_view as dv
from .. import hub_view as hv
from ..text import md
from .common import COLUMNS, Ctx, message_of, table_file, who

OOS_INTRO = (
    "A router decides when a message belongs to none of its labels. Example messages of that kind (a text "
    "column) let its run pick how it scores them, and report what share it catches."
)


def build(ctx: Ctx) -> None:
    with gr.Tab("2 · Data", id="data"):
        task = gr.Radio(
            ["classification", "instruction"],
            value="classification",
            label="Task",
            info="classification: (text, label) · instruction: (instruction, response)",
        )
        with gr.Row():
            sample = gr.Dropdown(list(dv.SAMPLES), value=list(dv.SAMPLES)[0], label="Bundled sample", scale=3)
            use_sample = gr.Button("Use this sample", scale=1)
        with gr.Row():
            upload = table_file(dv.upload_label(ctx.studio), scale=1)
            with gr.Group():
                hub_id = gr.Textbox(
                    label="…or from the Hub: a dataset id",
                    placeholder="legacy-datasets/banking77",
                    info="Public parquet, CSV or JSON datasets; its size is checked before anything is fetched.",
                )
                with gr.Row():
                    hub_config = gr.Dropdown([], label="Configuration", allow_custom_value=True)
                    hub_split = gr.Dropdown([], label="Split", allow_custom_value=True)
                with gr.Row():
                    hub_look = gr.Button("Look up", size="sm")
                    hub_load = gr.Button("Load from the Hub", size="sm", variant="primary")
                hub_md = gr.Markdown()
        with gr.Row():
            oos_upload = table_file(
                "…and out-of-scope examples (optional, classification): messages that belong to no label", scale=1
            )
            oos_md = gr.Markdown(OOS_INTRO)
        data_name = gr.Textbox(label="Data file", interactive=False)
        with gr.Row():
            column_boxes = {
                c: gr.Dropdown([], label=f"{c} column", allow_custom_value=True, visible=c in ("text", "label"))
                for c in COLUMNS
            }
        data_md = gr.Markdown()
        with gr.Row():
            label_plot = gr.Plot(label="Labels", visible=False)
            length_plot = gr.Plot(label="Token lengths", visible=False)
        tokens = gr.HighlightedText(
            label="One training example as the model sees it (the first row, at the max length of step 3)",
            color_map=dv.TOKEN_COLORS,
            show_legend=True,
            combine_adjacent=False,
            visible=False,
        )
        preview = gr.Dataframe(
            label="Preview (first 20 rows)", interactive=False, max_height=360, wrap=True, visible=False
        )
    ctx.add(tokens=tokens)
    ctx.add(hub_id=hub_id, hub_config=hub_config, hub_split=hub_split, hub_look=hub_look, hub_load=hub_load)
    ctx.add(hub_md=hub_md)
    ctx.add(task=task, columns=column_boxes, sample=sample, use_sample=use_sample, upload=upload)
    ctx.add(oos_upload=oos_upload, oos_md=oos_md)
    ctx.add(data_name=data_name, data_md=data_md, preview=preview, label_plot=label_plot, length_plot=length_plot)


def data_outputs(ctx: Ctx) -> list:
    """What every data event sets, in this order; the wizard's restore sets the same."""
    return [
        ctx.source, ctx["data_name"], ctx["task"], ctx["data_md"], ctx["preview"], ctx.labels,
        ctx["label_plot"], ctx["length_plot"], *ctx["columns"].values(), ctx["tokens"],
    ]  # fmt: skip


def show(studio, source: dict | None, task: str, base_model: str, max_length: int, mapping: dict) -> list:
    """The outputs for `source`, or, when it cannot be read, the same outputs cleared and the reason in
    words where the summary goes: nothing of a previous file stays loaded."""
    try:
        info = dv.describe_data(studio, source, task, mapping, base_model, max_length)
    except Exception as e:
        return cleared(task, message_of(e, "show data"), (source or {}).get("name"))
    fields = dv.detected_fields(task)
    boxes = [gr.update(choices=info["columns"], value=info["mapping"].get(c), visible=c in fields) for c in COLUMNS]
    plot = lambda fig: gr.update(value=fig, visible=fig is not None)  # noqa: E731
    source = {**source, "rows": info["rows"], "task": task, "labels": info["labels"], "ready": info["ready"]}
    source["tokens"] = info.get("token_stats")  # mean and longest, at the max length: for the estimates
    summary = "  \n".join(filter(None, [hv.hub_note(source), info["summary"]]))
    return [
        source, source["name"], task, summary, gr.update(value=info["preview"], visible=True), info["labels"],
        plot(info["label_chart"]), plot(info["length_chart"]), *boxes,
        gr.update(value=info["tokens"], visible=bool(info["tokens"])),
    ]  # fmt: skip


def cleared(task: str, message: str, name: str | None = None) -> list:
    """Outputs for a file that could not be loaded: no data left over, and the reason as text."""
    gr.Warning(message)
    text = f"**Could not load {md(name)}:** {message}" if name else f"**Could not load the file:** {message}"
    hidden = gr.update(value=None, visible=False)
    boxes = [gr.update(choices=[], value=None) for _ in COLUMNS]
    return [None, "", task, text, hidden, [], hidden, hidden, *boxes, hidden]


def wire(ctx: Ctx) -> None:
    studio, base, max_length, task = ctx.studio, ctx["base"], ctx["max_length"], ctx["task"]
    column_boxes = ctx["columns"]
    outputs = data_outputs(ctx)

    def use_bundled_sample(sample_name: str, base_model: str, max_length: int):
        source = {**dv.sample_source(sample_name), "ref": {"sample": sample_name}}
        base_model, note = dv.base_for_task(studio, base_model, source["task"])
        if note:
            gr.Info(note)
        shown = show(studio, source, source["task"], base_model, max_length, {})
        return [*shown, gr.update(value=None), base_model]

    def load_data(owner, file: str, task_: str, base_model: str, max_length: int, request: gr.Request):
        try:
            source = dv.upload_source(studio, file)
            owner = who(studio, owner, request)
            source["ref"] = {"upload": studio.remember_upload(source["path"], owner), "name": source["name"]}
        except Exception as e:
            return cleared(task_, message_of(e, "load data"))
        return show(studio, source, task_, base_model, max_length, {})

    def look_up_hub(owner, dataset_id: str, config: str | None, request: gr.Request):
        try:
            found = hv.hub_lookup(studio, dataset_id, config, who(studio, owner, request))
        except Exception as e:
            return gr.update(), gr.update(), f"**Could not look it up:** {message_of(e, 'look up a dataset')}"
        split = "train" if "train" in found["splits"] else next(iter(found["splits"]))
        return (
            gr.update(choices=found["configs"], value=found["config"]),
            gr.update(choices=list(found["splits"]), value=split),
            hv.lookup_note(found),
        )

    def hub_dataset_info(owner, dataset_id: str, request: gr.Request):
        """A Hub dataset's configurations, the splits of its default one (or its first) with their sizes."""
        return look_up_hub(owner, dataset_id, None, request)

    def load_hub_data(owner, dataset_id, config, split, task_, base_model, max_length, request: gr.Request):
        try:
            owner = who(studio, owner, request)
            source = hv.hub_source(studio, dataset_id, config, split, owner)
        except Exception as e:
            return cleared(task_, message_of(e, "load a Hub dataset"), (dataset_id or "").strip()[:100] or None)
        source["ref"] = {"hub": source["hub"]["dataset"], "config": source["hub"]["config"], "split": split}
        return show(studio, source, task_, base_model, max_length, {})

    def reread(source, task_, base_model, max_length):
        if not source:
            return [gr.update()] * len(outputs)
        return show(studio, source, task_, base_model, max_length, {})

    def remap(source, task_, base_model, max_length, *cols):
        mapping = {c: v for c, v in zip(COLUMNS, cols, strict=True) if v}
        return show(studio, source, task_, base_model, max_length, mapping)

    def attach_oos(owner, file: str | None, source: dict | None, request: gr.Request):
        try:
            return dv.with_oos_examples(studio, source, file, who(studio, owner, request))
        except Exception as e:
            return gr.update(), f"**Could not use these out-of-scope examples:** {message_of(e, 'read the file')}"

    oos = [ctx.source, ctx["oos_md"]]
    oos_in = [ctx.owner, ctx["oos_upload"], ctx.source]
    ctx["oos_upload"].upload(attach_oos, oos_in, oos, api_name="load_oos_examples")
    ctx["oos_upload"].clear(attach_oos, oos_in, oos, api_visibility="private")
    new_data = [
        ctx["use_sample"].click(
            use_bundled_sample,
            [ctx["sample"], base, max_length],
            [*outputs, ctx["upload"], base],
            api_name="use_sample",
        ),
        ctx["upload"].upload(
            load_data, [ctx.owner, ctx["upload"], task, base, max_length], outputs, api_name="load_data"
        ),
    ]
    hub_in = [ctx.owner, ctx["hub_id"], ctx["hub_config"]]
    hub_out = [ctx["hub_config"], ctx["hub_split"], ctx["hub_md"]]
    ctx["hub_look"].click(hub_dataset_info, hub_in[:2], hub_out, api_name="hub_dataset_info")
    ctx["hub_id"].submit(hub_dataset_info, hub_in[:2], hub_out, api_visibility="private")
    ctx["hub_config"].input(look_up_hub, hub_in, hub_out, api_visibility="private")  # its own splits
    ctx["hub_id"].input(  # another dataset: the last one's configuration and split no longer apply
        lambda: (gr.update(value=None, choices=[]), gr.update(value=None, choices=[])),
        None,
        [ctx["hub_config"], ctx["hub_split"]],
        api_visibility="private",
        show_progress="hidden",
    )
    new_data.append(
        ctx["hub_load"].click(
            load_hub_data,
            [ctx.owner, ctx["hub_id"], ctx["hub_config"], ctx["hub_split"], task, base, max_length],
            outputs,
            api_name="load_hub_data",
        )
    )
    for event in new_data:  # other data: the last file's out-of-scope examples no longer apply
        event.then(lambda: (None, OOS_INTRO), None, [ctx["oos_upload"], ctx["oos_md"]], api_visibility="private")
    for trigger in (task.input, max_length.release, ctx["load"].click):
        trigger(reread, [ctx.source, task, base, max_length], outputs, api_visibility="private")
    for box in column_boxes.values():
        box.input(
            remap, [ctx.source, task, base, max_length, *column_boxes.values()], outputs, api_visibility="private"
        )
