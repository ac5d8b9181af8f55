"""The Gradio wizard: Model -> Data -> Adapter -> Train -> Use -> Compare, plus the Library.

Each tab lives in `studio/tabs/<tab>.py`: `build` makes its components, `wire` connects their events to
handlers. This module makes the shared state, resolves who the visitor is, and keeps every adapter
picker in step with the visitor's library.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from gradio.utils import get_space, get_upload_folder
from starlette.routing import Mount

from . import train_view as h
from .api import api_app
from .comparison import library_table
from .gate import configure_queue, gate
from .hardware import hardware
from .keys import browser_secret
from .service import Studio
from .tabs import adapter, compare, data, library, model, train, use, wizard
from .tabs.common import Ctx, friendly, identify, who

MAX_UPLOAD_MB = 50
MAX_UPLOAD = f"{MAX_UPLOAD_MB}mb"
TABS = (model, data, adapter, train, use, compare, library)
CACHE_CLEANUP = (3600, 3600)  # every hour, delete gradio's temporary files older than an hour


def sign_in_available(studio: Studio) -> bool:
    # Off a real Space, gradio's LoginButton mocks sign-in with the machine's own Hub account, which
    # needs the network; sign-in is offered only where Spaces' OAuth is configured (hf_oauth: true).
    return studio.policy.public and bool(get_space()) and bool(os.environ.get("OAUTH_CLIENT_ID"))


def build_app(studio: Studio | None = None) -> gr.Blocks:
    studio = studio or Studio()
    studio.upload_roots = [Path(get_upload_folder())]
    secret = browser_secret(studio.home)  # encrypts visitors' tokens in their browsers; public, signs nothing
    with gr.Blocks(title="Adapter Studio", delete_cache=CACHE_CLEANUP) as demo:
        demo.studio = studio  # launch() mounts the HTTP API over the same service
        ctx = Ctx(
            studio=studio,
            owner=gr.State(None),
            browser_id=gr.BrowserState(None, storage_key="adapter-studio-visitor", secret=secret),
            job_id=gr.State(None),
            remembered_job=gr.BrowserState(None, storage_key="adapter-studio-job", secret=secret),
            source=gr.State(None),
            labels=gr.State([]),
            library_changed=gr.State(0),
        )
        ctx.add(
            wizard=gr.BrowserState({}, storage_key="adapter-studio-wizard", secret=secret),
            tab=gr.State(None),  # the tab the visitor picked (None: none yet on this page)
        )
        header(studio)
        with gr.Tabs() as tabs:
            for tab in TABS:
                tab.build(ctx)
        ctx.add(tabs=tabs)
        for tab in TABS:
            tab.wire(ctx)
        wizard.wire(ctx, wire_visitor(ctx, demo))
    return demo


def header(studio: Studio) -> None:
    gr.Markdown(
        "# Adapter Studio\nTrain tiny bottleneck adapters on a frozen transformer, watch them learn, and use "
        "them side by side. Work through the tabs from left to right."
    )
    hw = hardware()
    if hw.notice:
        gr.Markdown(hw.notice)
    if studio.policy.public:
        policy = studio.policy
        gr.Markdown(
            "> **Public studio.** Your runs and adapters are private to you"
            + (" (sign in to keep them across browsers)" if sign_in_available(studio) else " and this browser")
            + f". Limits: {policy.max_jobs_per_owner} runs at a time, "
            f"{policy.max_adapters_per_owner} adapters, {policy.max_epochs:g} epochs "
            f"and {policy.max_seconds / 60:.0f} minutes a run; a sweep is at most "
            f"{policy.max_sweep_runs} runs, counts as one run and shares one run's time."
            + (
                ""
                if policy.anonymous_heavy
                else " Training on your own data, sweeps, uploads, Hub pulls and pushes, large evaluations and "
                "API keys need a Hugging Face sign-in; without one you can train on the bundled samples."
            )
        )
        if sign_in_available(studio):
            gr.LoginButton()


def wire_visitor(ctx: Ctx, demo: gr.Blocks):
    """Who the visitor is (at page load), and the pickers that list their adapters."""
    studio = ctx.studio
    pickers = [ctx["cls_adapter"], ctx["chat_adapter"], ctx["router"], ctx["cmp_sel"], ctx["lib_pick"]]

    def refresh(owner):
        classifiers, chat, every = (
            studio.library.names(t, owner=owner) for t in ("classification", "instruction", None)
        )
        # A picker with exactly one fitting adapter starts on it; otherwise the visitor's choice stays.
        single = lambda names: gr.update(choices=names, value=names[0]) if len(names) == 1 else gr.update(choices=names)  # noqa: E731
        return [
            single(classifiers),
            gr.update(choices=[h.NONE, *chat]),
            single(classifiers),
            gr.update(choices=every),
            gr.update(choices=every),
            library_table(studio, owner),
        ]

    def on_load(token, remembered, profile: gr.OAuthProfile | None, request: gr.Request):
        owner, token = identify(studio, token, profile)
        owner = who(studio, owner, request)
        kept = str(owner) if owner is not None else None  # the id; each request brings its own address
        return [kept, token, h.reattach(studio, owner, remembered), *refresh(owner)]

    outputs = [*pickers, ctx["lib_table"]]
    loaded = demo.load(
        friendly(on_load),
        [ctx.browser_id, ctx.remembered_job],
        [ctx.owner, ctx.browser_id, ctx.job_id, *outputs],
        api_visibility="private",
    )

    def on_library_change(owner, request: gr.Request):
        return refresh(who(studio, owner, request))

    ctx.library_changed.change(friendly(on_library_change), ctx.owner, outputs, api_visibility="private")
    return loaded


def launch(demo: gr.Blocks, **kwargs):
    """Serve the studio, with the OpenAI-compatible API at /v1 over the same studio service. A public
    studio's queue is bounded and grouped for a small machine, every request meets the gate (`gate`),
    and no event skips the queue."""
    kwargs.setdefault("max_file_size", MAX_UPLOAD)
    app_kwargs: dict = {"routes": [Mount("/v1", app=api_app(demo.studio))]}
    policy = demo.studio.policy
    if policy.public:
        configure_queue(demo, policy)
        demo.queue(max_size=policy.queue_size, default_concurrency_limit=policy.light_slots, api_open=False)
        app_kwargs["middleware"] = [gate(demo, policy, largest_file=MAX_UPLOAD_MB * 2**20)]
    else:
        demo.queue(default_concurrency_limit=8)
    return demo.launch(theme=gr.themes.Soft(primary_hue="indigo"), app_kwargs=app_kwargs, **kwargs)
