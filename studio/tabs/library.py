"""The Library tab: the visitor's adapters and the shared examples; rename, delete, download, upload."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from adapter_core import AdapterError

from .. import comparison as c
from ..comparison import LIBRARY_COLUMNS
from ..text import md
from .common import Ctx, friendly, who


def build(ctx: Ctx) -> None:
    with gr.Tab("Library", id="library"):
        lib_table = gr.Dataframe(
            pd.DataFrame(columns=LIBRARY_COLUMNS),
            interactive=False,
            label="Adapters",
            wrap=True,
        )
        with gr.Row(equal_height=True):
            lib_pick = gr.Dropdown([], label="Adapter", allow_custom_value=True, scale=2)
            lib_new = gr.Textbox(label="New name", scale=2, placeholder="letters, digits, spaces, '_' and '-'")
        with gr.Row():
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
        lib_msg = gr.Markdown()
    ctx.add(lib_table=lib_table, lib_pick=lib_pick, lib_new=lib_new, lib_rename=lib_rename, lib_delete=lib_delete)
    ctx.add(lib_zip=lib_zip, lib_download=lib_download, lib_files=lib_files, lib_upload=lib_upload, lib_msg=lib_msg)


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    def list_adapters(request: gr.Request = None) -> list[dict]:
        """The caller's adapters and the shared examples, one dict per adapter (for API clients)."""
        return c.library_table(studio, who(studio, None, request)).to_dict("records")

    gr.api(friendly(list_adapters), api_name="list_adapters")

    def rename_adapter(owner, adapter: str, new_name: str, changed, request: gr.Request):
        if not adapter:
            raise AdapterError("Pick an adapter to rename.")
        entry = studio.rename(adapter, new_name, who(studio, owner, request))
        return (changed or 0) + 1, f"Renamed {md(adapter)} to {md(entry.name)}."

    def delete_adapter(owner, adapter: str, changed, request: gr.Request):
        if not adapter:
            raise AdapterError("Pick an adapter to delete.")
        studio.delete(adapter, who(studio, owner, request))
        return (changed or 0) + 1, f"Deleted {md(adapter)}.", gr.update(value=None)

    def download_adapter(owner, adapter: str, request: gr.Request):
        if not adapter:
            raise AdapterError("Pick an adapter to download.")
        return gr.update(value=str(studio.download(adapter, who(studio, owner, request))), visible=True)

    def upload_adapter(owner, files: list[str], changed, request: gr.Request):
        if not files:
            raise AdapterError("Choose the adapter's files first.")
        entry = studio.upload(files, who(studio, owner, request))
        return (changed or 0) + 1, f"Added {md(entry.name)} to the library."

    changed = ctx.library_changed
    ctx["lib_rename"].click(
        friendly(rename_adapter),
        [ctx.owner, ctx["lib_pick"], ctx["lib_new"], changed],
        [changed, ctx["lib_msg"]],
        api_name="rename_adapter",
    )
    ctx["lib_delete"].click(
        friendly(delete_adapter),
        [ctx.owner, ctx["lib_pick"], changed],
        [changed, ctx["lib_msg"], ctx["lib_pick"]],
        api_name="delete_adapter",
    )
    ctx["lib_zip"].click(
        friendly(download_adapter), [ctx.owner, ctx["lib_pick"]], ctx["lib_download"], api_name="download_adapter"
    )
    ctx["lib_upload"].click(
        friendly(upload_adapter),
        [ctx.owner, ctx["lib_files"], changed],
        [changed, ctx["lib_msg"]],
        api_name="upload_adapter",
    )
