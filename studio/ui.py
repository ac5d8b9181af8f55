"""The Gradio wizard: Model -> Data -> Adapter -> Train -> Use -> Compare, plus the Library.

Thin by design: every handler calls `handlers` or `Studio`, and every user error becomes a message.
"""

from __future__ import annotations

import functools
import inspect
import logging
import tempfile
import threading
from pathlib import Path

import gradio as gr

from adapter_core import AdapterError

from . import handlers as h
from .gpu import device_summary, gpu, on_cpu
from .service import Studio

log = logging.getLogger("adapter_studio")
COLUMNS = ("text", "label", "instruction", "response", "input", "system")
MAX_UPLOAD = "50mb"


def friendly(fn):
    """Turn errors into gradio messages: a user's mistake in its own words, a bug without a traceback."""

    def convert(e: Exception) -> gr.Error:
        if isinstance(e, (AdapterError, gr.Error)):
            return e if isinstance(e, gr.Error) else gr.Error(str(e))
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The run history and adapters are safe.")

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise convert(e) from None

        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise convert(e) from None

    return call


def build_app(studio: Studio | None = None) -> gr.Blocks:
    studio = studio or Studio()
    stops: dict[str, threading.Event] = {}  # session -> stop flag of its chat stream

    def adapters(task: str | None = None) -> list[str]:
        return studio.library.names(task)

    with gr.Blocks(title="Adapter Studio") as demo:
        job_id = gr.State(None)
        seen_done = gr.State(None)
        remembered = gr.BrowserState(None, storage_key="adapter-studio-job")
        labels = gr.State([])
        gr.Markdown(
            "# Adapter Studio\nTrain tiny bottleneck adapters on a frozen transformer, watch them learn, and use "
            "them side by side. Work through the tabs from left to right."
        )
        if on_cpu():
            gr.Markdown(
                f"> **Running on CPU** ({device_summary()}): MiniLM adapters train in a minute or two; "
                "SmolLM2 instruction runs take a few minutes. A GPU Space is much faster."
            )

        with gr.Tabs():
            with gr.Tab("1 · Model", id="model"):
                with gr.Row():
                    base = gr.Dropdown(
                        h.model_choices(),
                        value="minilm",
                        allow_custom_value=True,
                        scale=3,
                        label="Base model",
                        info="Embedded models work offline; or type a hub id or local path",
                    )
                    load = gr.Button("Load model", variant="primary", scale=1)
                model_md = gr.Markdown("Pick a model and press **Load model**.")

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
                    label="…or upload CSV / TSV / JSONL (50 MB max)",
                    file_types=[".csv", ".tsv", ".jsonl"],
                    type="filepath",
                )
                data_path = gr.Textbox(label="Data file", interactive=False)
                with gr.Row():
                    column_boxes = {
                        c: gr.Dropdown(
                            [], label=f"{c} column", allow_custom_value=False, visible=c in ("text", "label")
                        )
                        for c in COLUMNS
                    }
                data_md = gr.Markdown()
                preview = gr.Dataframe(label="Preview (first 20 rows)", interactive=False, max_height=320)

            with gr.Tab("3 · Adapter", id="adapter"):
                preset = gr.Radio(list(h.PRESETS), label="Preset", value="Balanced (r=64, 4 epochs)")
                with gr.Row():
                    bottleneck = gr.Slider(4, 512, value=64, step=4, label="Bottleneck size r")
                    placement = gr.Dropdown(["houlsby", "pfeiffer", "parallel"], value="houlsby", label="Placement")
                    activation = gr.Dropdown(["gelu", "relu", "swish", "tanh"], value="gelu", label="Activation")
                with gr.Row():
                    lr = gr.Number(2e-3, label="Learning rate")
                    epochs = gr.Number(4, label="Epochs", minimum=0.05)
                    batch = gr.Slider(1, 128, value=32, step=1, label="Batch size")
                    max_length = gr.Slider(16, 1024, value=128, step=16, label="Max length (tokens)")
                    seed = gr.Number(42, label="Seed", precision=0)
                name = gr.Textbox(label="Adapter name", placeholder="e.g. routing (default: file name + r)")
                estimate_md = gr.Markdown()

            with gr.Tab("4 · Train", id="train"):
                with gr.Row():
                    start = gr.Button("Start training", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                status_md = gr.Markdown("No run yet.")
                plot = gr.Plot(label="Training curve")
                queue_md = gr.Markdown()
                timer = gr.Timer(1.0)
                with gr.Accordion("Past runs (kept across restarts)", open=False):
                    with gr.Row():
                        past = gr.Dropdown(h.past_runs(studio), label="Run", scale=3)
                        past_show = gr.Button("Show", scale=1)
                    past_md = gr.Markdown()
                    past_plot = gr.Plot(label="Its curve")

            with gr.Tab("5 · Use", id="use"):
                with gr.Tab("Classify"):
                    cls_adapter = gr.Dropdown(
                        adapters("classification"), label="Classification adapter", allow_custom_value=True
                    )
                    cls_text = gr.Textbox(label="Text", placeholder="Where is my parcel? It was due Monday.")
                    cls_go = gr.Button("Classify", variant="primary")
                    cls_out = gr.Label(label="Prediction", num_top_classes=6)
                with gr.Tab("Chat"):
                    chat_adapter = gr.Dropdown(
                        [h.NONE, *adapters("instruction")],
                        value=h.NONE,
                        label="Instruction adapter ((none): the bare base model)",
                    )
                    chat_base = gr.Dropdown(
                        h.model_choices(),
                        value="smollm2-135m-instruct",
                        allow_custom_value=True,
                        label="Base model when no adapter is chosen",
                    )
                    chatbot = gr.Chatbot(label="Chat", height=380)
                    with gr.Row():
                        chat_msg = gr.Textbox(label="Message", scale=4, placeholder="My order never arrived.")
                        chat_send = gr.Button("Send", variant="primary", scale=1)
                        chat_stop = gr.Button("Stop", scale=1)
                with gr.Tab("Route"):
                    router = gr.Dropdown(
                        adapters("classification"), label="Router (a classification adapter)", allow_custom_value=True
                    )
                    route_msg = gr.Textbox(label="Customer message")
                    route_go = gr.Button("Route and answer", variant="primary")
                    route_md = gr.Markdown()
                    route_answer = gr.Markdown()
                    route_many_msgs = gr.Textbox(
                        label="Or many messages, one per line: each is answered by its department's adapter, "
                        "all in one batch",
                        lines=4,
                    )
                    route_many_go = gr.Button("Route and answer all")
                    route_many_out = gr.Dataframe(label="Routed answers", interactive=False, wrap=True)

            with gr.Tab("6 · Compare", id="compare"):
                cmp_sel = gr.Dropdown(adapters(), multiselect=True, label="Adapters (2 to 4)")
                cmp_base = gr.Checkbox(label="Include the bare base model (instruction adapters)")
                cmp_text = gr.Textbox(label="Input")
                cmp_go = gr.Button("Run side by side", variant="primary")
                with gr.Row():
                    cmp_cols = [gr.Markdown() for _ in range(5)]
                cmp_plot = gr.Plot(label="Loss curves")
                cmp_table = gr.Dataframe(label="Adapters", interactive=False)
                cmp_file = gr.File(label="Labelled test file", file_types=[".csv", ".tsv", ".jsonl"], type="filepath")
                cmp_eval = gr.Button("Evaluate all on the test file")
                cmp_scores = gr.Dataframe(label="Test scores", interactive=False)

            with gr.Tab("Library", id="library"):
                lib_table = gr.Dataframe(h.library_table(studio), interactive=False, label="Adapters")
                with gr.Row():
                    lib_pick = gr.Dropdown(adapters(), label="Adapter")
                    lib_new = gr.Textbox(label="New name")
                    lib_rename = gr.Button("Rename")
                    lib_delete = gr.Button("Delete", variant="stop")
                    lib_zip = gr.Button("Prepare download")
                lib_download = gr.DownloadButton("Download zip", visible=False)
                lib_files = gr.File(
                    label="Upload an adapter: adapter_config.json + adapter_model.safetensors, or a zip of them",
                    file_count="multiple",
                    file_types=[".json", ".safetensors", ".zip"],
                )
                lib_upload = gr.Button("Upload")

        all_pickers = [cls_adapter, chat_adapter, router, cmp_sel, lib_pick]

        def picker_updates():
            return [
                gr.update(choices=adapters("classification")),
                gr.update(choices=[h.NONE, *adapters("instruction")]),
                gr.update(choices=adapters("classification")),
                gr.update(choices=adapters()),
                gr.update(choices=adapters()),
                h.library_table(studio),
            ]

        # 1 · Model
        load.click(friendly(lambda b: h.describe_model(studio, b)), base, model_md)

        # 2 · Data
        def show_data(path, task_, base_name, max_len, *cols):
            mapping = {c: v for c, v in zip(COLUMNS, cols, strict=True) if v}
            info = h.inspect_data(path, task_, mapping, studio.base(base_name).tokenizer, int(max_len))
            fields = h.detected_fields(task_)
            boxes = [
                gr.update(choices=info["columns"], value=info["mapping"].get(c), visible=c in fields) for c in COLUMNS
            ]
            return [path, info["summary"], info["preview"], info["labels"], *boxes]

        data_outputs = [data_path, data_md, preview, labels, *column_boxes.values()]

        def pick_sample(choice, base_name, max_len):
            file, task_ = h.SAMPLES[choice]
            path = str(h.SAMPLES_DIR / file)
            return [path, task_, *show_data(path, task_, base_name, max_len, *[None] * 6)]

        def reread(path, task_, base_name, max_len):
            if not path:
                return [None, "", None, [], *[gr.update()] * 6]
            return show_data(path, task_, base_name, max_len, *[None] * 6)

        use_sample.click(friendly(pick_sample), [sample, base, max_length], [data_path, task, *data_outputs])
        upload.upload(friendly(reread), [upload, task, base, max_length], data_outputs)
        task.input(friendly(reread), [data_path, task, base, max_length], data_outputs)
        for box in column_boxes.values():
            box.input(friendly(show_data), [data_path, task, base, max_length, *column_boxes.values()], data_outputs)

        # 3 · Adapter
        def apply_preset(p):
            s = h.PRESETS[p]
            return s["bottleneck"], s["epochs"], s["lr"]

        preset.input(apply_preset, preset, [bottleneck, epochs, lr])
        for trigger in (bottleneck.change, placement.change, labels.change, load.click):
            trigger(
                friendly(lambda b, r, p, lab: h.estimate(studio, b, r, p, len(lab))),
                [base, bottleneck, placement, labels],
                estimate_md,
            )

        # 4 · Train
        def start_run(b, path, t, n, r, p, act, lr_, ep, bs, ml, sd, *cols):
            settings = dict(
                bottleneck=int(r),
                placement=p,
                activation=act,
                lr=float(lr_),
                epochs=float(ep),
                batch_size=int(bs),
                max_length=int(ml),
                seed=int(sd),
            )
            mapping = {c: v for c, v in zip(COLUMNS, cols, strict=True) if v}
            job = h.start_training(studio, b, path, t, mapping, n, settings)
            gr.Info("Training started; it runs in the background, so you can leave and come back.")
            return job, job, None

        start.click(
            friendly(start_run),
            [
                base,
                data_path,
                task,
                name,
                bottleneck,
                placement,
                activation,
                lr,
                epochs,
                batch,
                max_length,
                seed,
                *column_boxes.values(),
            ],
            [job_id, remembered, seen_done],
        )
        stop.click(friendly(lambda j: studio.jobs.stop(j) if j else None), job_id, None)
        past.focus(lambda: gr.update(choices=h.past_runs(studio)), None, past, api_visibility="private")
        past_show.click(friendly(lambda r: h.show_past_run(studio, r)[::-1]), past, [past_md, past_plot])

        def tick(j, seen):
            info = h.progress(studio, j)
            newly_done = info["done"] and j is not None and seen != j
            pickers = picker_updates() if newly_done else [gr.update()] * 6
            return [info["figure"], info["status"], info["queue"], j if info["done"] else seen, *pickers]

        timer.tick(
            tick,
            [job_id, seen_done],
            [plot, status_md, queue_md, seen_done, *all_pickers, lib_table],
            show_progress="hidden",
            api_visibility="private",
        )

        def on_load(saved):
            j = h.reattach(studio, saved)
            return [j, *picker_updates()]

        demo.load(on_load, remembered, [job_id, *all_pickers, lib_table], api_visibility="private")

        # 5 · Use
        cls_go.click(
            friendly(lambda a, t: h.classify_text(studio, a, t)), [cls_adapter, cls_text], cls_out, api_name="classify"
        )
        cls_text.submit(friendly(lambda a, t: h.classify_text(studio, a, t)), [cls_adapter, cls_text], cls_out)

        @gpu
        def chat(adapter, base_name, message, history, request: gr.Request):
            if not (message or "").strip():
                raise AdapterError("Type a message first.")
            stops[request.session_hash] = event = threading.Event()
            history = [*(history or []), {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
            name = None if adapter in (None, "", h.NONE) else adapter
            for piece in studio.chat(name, base_name, message, stop=event):
                history[-1]["content"] += piece
                yield history, ""

        chat_send.click(
            friendly(chat), [chat_adapter, chat_base, chat_msg, chatbot], [chatbot, chat_msg], api_name="chat"
        )
        chat_msg.submit(friendly(chat), [chat_adapter, chat_base, chat_msg, chatbot], [chatbot, chat_msg])

        def stop_chat(request: gr.Request):
            if request.session_hash in stops:
                stops[request.session_hash].set()

        chat_stop.click(stop_chat, None, None, api_visibility="private")

        @gpu
        def route(router_name, message):
            h.check_router(router_name)
            if not (message or "").strip():
                raise AdapterError("Type a customer message.")
            [(prediction, target)] = studio.route(router_name, [message])
            head = (
                f"Router **{router_name}** chose **{prediction.label}** ({prediction.confidence:.1%} confident) "
                f"→ answered by **{target}**"
            )
            answer = ""
            for piece in studio.chat(target, "", message):
                answer += piece
                yield head, answer

        route_go.click(friendly(route), [router, route_msg], [route_md, route_answer], api_name="route")

        @gpu
        def route_many(router_name, text):
            return h.route_table(studio, router_name, text)

        route_many_go.click(
            friendly(route_many),
            [router, route_many_msgs],
            route_many_out,
            api_name="route_many",
        )

        # 6 · Compare
        @gpu
        def compare(sel, with_base, text):
            sel = h.check_compare_selection(sel, with_base)
            outs = h.compare_outputs(studio, sel, text, with_base)
            cols = [gr.update(value=o, visible=True) for o in outs]
            cols += [gr.update(value="", visible=False)] * (5 - len(cols))
            return [*cols, h.compare_curves(studio, sel), h.compare_table(studio, sel)]

        cmp_go.click(friendly(compare), [cmp_sel, cmp_base, cmp_text], [*cmp_cols, cmp_plot, cmp_table])
        cmp_sel.change(
            friendly(lambda s: (h.compare_curves(studio, s or []), h.compare_table(studio, s or []))),
            cmp_sel,
            [cmp_plot, cmp_table],
        )
        cmp_eval.click(
            friendly(lambda s, f: h.compare_evaluate(studio, h.check_compare_selection(s), f)),
            [cmp_sel, cmp_file],
            cmp_scores,
        )

        # Library
        def rename(old, new):
            if not old:
                raise AdapterError("Pick an adapter to rename.")
            studio.library.rename(old, new)
            return picker_updates()

        def delete(old):
            if not old:
                raise AdapterError("Pick an adapter to delete.")
            studio.library.delete(old)
            gr.Info(f"Deleted {old}.")
            return picker_updates()

        def prepare_zip(old):
            if not old:
                raise AdapterError("Pick an adapter to download.")
            path = studio.library.zip(old, Path(tempfile.mkdtemp()))
            return gr.update(value=str(path), visible=True)

        def upload_adapter(files):
            if not files:
                raise AdapterError("Choose the adapter's files first.")
            entry = studio.library.upload(files)
            gr.Info(f"Added {entry.name} to the library.")
            return picker_updates()

        lib_outputs = [*all_pickers, lib_table]
        lib_rename.click(friendly(rename), [lib_pick, lib_new], lib_outputs)
        lib_delete.click(friendly(delete), lib_pick, lib_outputs)
        lib_zip.click(friendly(prepare_zip), lib_pick, lib_download)
        lib_upload.click(friendly(upload_adapter), lib_files, lib_outputs)
    return demo


def launch(demo: gr.Blocks, **kwargs):
    kwargs.setdefault("max_file_size", MAX_UPLOAD)
    return demo.queue(default_concurrency_limit=8).launch(theme=gr.themes.Soft(primary_hue="indigo"), **kwargs)
