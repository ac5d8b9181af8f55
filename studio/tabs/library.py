"""The Library tab: the visitor's adapters and the shared examples; rename, delete, download, upload; and
sharing: the model card, push to and pull from the Hugging Face Hub, AdapterHub export, hub packs."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from adapter_core import AdapterError

from .. import comparison as c
from .. import share_view as sv
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
        build_share(ctx)
    ctx.add(lib_table=lib_table, lib_pick=lib_pick, lib_new=lib_new, lib_rename=lib_rename, lib_delete=lib_delete)
    ctx.add(lib_zip=lib_zip, lib_download=lib_download, lib_files=lib_files, lib_upload=lib_upload, lib_msg=lib_msg)


def build_share(ctx: Ctx) -> None:
    """Share the picked adapter: its model card, the Hugging Face Hub, AdapterHub's format, a hub pack."""
    public = ctx.studio.policy.public
    with gr.Accordion("Share: model card, Hugging Face Hub, AdapterHub, hub pack", open=False):
        with gr.Row(equal_height=True):
            share_repo = gr.Textbox(label="Hub repository", placeholder="owner/name", scale=3)
            share_private = gr.Checkbox(label="private", value=True, scale=1)
            share_push = gr.Button("Push to the Hub", scale=1)
            share_push_pack = gr.Button("Push as a hub pack (router + departments)", scale=1)
        if public:
            gr.Markdown("Pushing uses your own Hugging Face account: sign in first. The studio never pushes for you.")
        with gr.Row(equal_height=True):
            share_pull_repo = gr.Textbox(label="Pull from the Hub", placeholder="owner/name", scale=3)
            share_pull = gr.Button("Pull into my library (an adapter or a whole pack)", scale=1)
        with gr.Row():
            share_export = gr.Button("Export for AdapterHub (zip)")
            share_pack = gr.Button("Pack this router with its departments (zip)")
        share_download = gr.DownloadButton("Download", visible=False)
        share_msg = gr.Markdown()
        share_card = gr.Markdown(label="Model card")
    ctx.add(share_repo=share_repo, share_private=share_private, share_push=share_push, share_card=share_card)
    ctx.add(share_pull_repo=share_pull_repo, share_pull=share_pull, share_export=share_export)
    ctx.add(share_pack=share_pack, share_download=share_download, share_msg=share_msg, share_push_pack=share_push_pack)


def wire_share(ctx: Ctx) -> None:
    studio, changed = ctx.studio, ctx.library_changed

    def show_card(owner, adapter: str, request: gr.Request):
        try:
            return sv.card_preview(studio, adapter, who(studio, owner, request))
        except AdapterError:  # a name being typed, or one just deleted: no card yet
            return ""

    def push_adapter(
        owner, adapter: str, repo: str, private: bool, oauth_token: gr.OAuthToken | None, request: gr.Request
    ):
        token = getattr(oauth_token, "token", None)
        return sv.push(studio, adapter, repo, private, token, who(studio, owner, request))

    def push_pack(owner, router: str, repo: str, private: bool, oauth_token: gr.OAuthToken | None, request: gr.Request):
        token = getattr(oauth_token, "token", None)
        return sv.push_pack(studio, router, repo, private, token, who(studio, owner, request))

    def pull_adapter(owner, repo: str, changed_count, oauth_token: gr.OAuthToken | None, request: gr.Request):
        name, message = sv.pull(studio, repo, getattr(oauth_token, "token", None), who(studio, owner, request))
        return (changed_count or 0) + 1, message, gr.update(value=name)

    def export_adapter(owner, adapter: str, request: gr.Request):
        path, message = sv.export_adapterhub(studio, adapter, who(studio, owner, request))
        return gr.update(value=str(path), visible=True), message

    def pack_hub(owner, router: str, request: gr.Request):
        return gr.update(value=str(sv.pack(studio, router, who(studio, owner, request))), visible=True)

    ctx["lib_pick"].change(
        friendly(show_card), [ctx.owner, ctx["lib_pick"]], ctx["share_card"], api_visibility="private"
    )
    ctx["share_push"].click(
        friendly(push_adapter),
        [ctx.owner, ctx["lib_pick"], ctx["share_repo"], ctx["share_private"]],
        ctx["share_msg"],
        api_name="push_adapter",
    )
    ctx["share_push_pack"].click(
        friendly(push_pack),
        [ctx.owner, ctx["lib_pick"], ctx["share_repo"], ctx["share_private"]],
        ctx["share_msg"],
        api_name="push_pack",
    )
    ctx["share_pull"].click(
        friendly(pull_adapter),
        [ctx.owner, ctx["share_pull_repo"], changed],
        [changed, ctx["share_msg"], ctx["lib_pick"]],
        api_name="pull_adapter",
    )
    ctx["share_export"].click(
        friendly(export_adapter),
        [ctx.owner, ctx["lib_pick"]],
        [ctx["share_download"], ctx["share_msg"]],
        api_name="export_adapterhub",
    )
    ctx["share_pack"].click(
        friendly(pack_hub), [ctx.owner, ctx["lib_pick"]], ctx["share_download"], api_name="pack_hub"
    )


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
    wire_share(ctx)
