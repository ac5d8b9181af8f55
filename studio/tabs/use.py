"""Tab 5, Use: classify, chat (streamed, with a stop button), and route customer messages."""

from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

from adapter_core import FALSE_REJECTION, MAX_FALSE_REJECTION, REPETITION_WARNING

from .. import train_view as h
from .. import use_view as u
from ..hardware import gpu
from .common import Ctx, friendly, who


def build(ctx: Ctx) -> None:
    choices = h.model_choices(ctx.studio)
    chat_default = "smollm2-135m-instruct" if "smollm2-135m-instruct" in choices else choices[0]
    with gr.Tab("5 · Use", id="use"):
        with gr.Tab("Classify"):
            cls_adapter = gr.Dropdown([], label="Classification adapter", allow_custom_value=True)
            cls_text = gr.Textbox(label="Text", placeholder="Where is my parcel? It was due Monday.")
            cls_go = gr.Button("Classify", variant="primary")
            cls_out = gr.Label(label="Prediction", num_top_classes=6)
        with gr.Tab("Chat"):
            chat_adapter = gr.Dropdown(
                [h.NONE],
                value=h.NONE,
                label="Instruction adapter",
                info="(none) talks to the bare base model, to compare",
                allow_custom_value=True,
            )
            chat_base = gr.Dropdown(
                choices, value=chat_default, label="Base model when no adapter is chosen", allow_custom_value=True
            )
            chatbot = gr.Chatbot(label="Chat", height=380)
            with gr.Row():
                chat_msg = gr.Textbox(label="Message", scale=4, placeholder="My order never arrived.")
                chat_send = gr.Button("Send", variant="primary", scale=1)
                chat_stop = gr.Button("Stop", scale=1)
        with gr.Tab("Route"):
            router = gr.Dropdown([], label="Router (a classification adapter)", allow_custom_value=True)
            route_map_md = gr.Markdown()
            route_map = gr.Dataframe(
                pd.DataFrame(columns=u.MAP_COLUMNS),
                label="Which department adapter answers each label (the rest go to the fallback)",
                interactive=False,
                wrap=True,
            )
            with gr.Row():
                route_rate = gr.Slider(
                    0,
                    MAX_FALSE_REJECTION,
                    value=FALSE_REJECTION,
                    step=0.01,
                    label="In-scope messages sent to the fallback",
                    info="The share of in-scope messages the out-of-scope threshold may reject: higher catches "
                    "more out-of-scope messages. Picking a router sets it to the rate it was calibrated for.",
                )
                route_handoff = gr.Textbox(
                    "",
                    label="Hand-off message for the fallback",
                    placeholder=u.HANDOFF,
                    info="Empty: the bare base model answers instead.",
                )
            route_rate_md = gr.Markdown()
            route_msg = gr.Textbox(label="Customer message")
            route_go = gr.Button("Route and answer", variant="primary")
            route_md = gr.Markdown()
            route_answer = gr.Markdown()
            route_many_msgs = gr.Textbox(
                label="Or many messages, one per line: each is answered by its department's adapter, all in one batch",
                lines=4,
            )
            route_many_go = gr.Button("Route and answer all")
            route_many_out = gr.Dataframe(
                pd.DataFrame(columns=u.ROUTED_COLUMNS), label="Routed answers", interactive=False, wrap=True
            )
        with gr.Tab("API"):
            gr.Markdown("Call your adapters from code, with any OpenAI client.")
            with gr.Row():
                api_show = gr.Button("Show how (and my API key)")
                api_revoke = gr.Button("Revoke my key and make a new one", visible=ctx.studio.policy.public)
            api_md = gr.Markdown()
    ctx.add(cls_adapter=cls_adapter, chat_adapter=chat_adapter, router=router)
    ctx.add(cls_text=cls_text, cls_go=cls_go, cls_out=cls_out, chat_base=chat_base, chatbot=chatbot)
    ctx.add(chat_msg=chat_msg, chat_send=chat_send, chat_stop=chat_stop, route_msg=route_msg, route_go=route_go)
    ctx.add(route_md=route_md, route_answer=route_answer, route_many_msgs=route_many_msgs)
    ctx.add(route_many_go=route_many_go, route_many_out=route_many_out, route_map_md=route_map_md, route_map=route_map)
    ctx.add(
        route_rate=route_rate,
        route_rate_md=route_rate_md,
        route_handoff=route_handoff,
        api_show=api_show,
        api_md=api_md,
    )
    ctx.add(api_revoke=api_revoke)


def wire(ctx: Ctx) -> None:
    studio = ctx.studio
    stops: dict[str, threading.Event] = {}  # session -> stop flag of its chat stream

    def classify(owner, adapter: str, text: str, request: gr.Request):
        return u.classify_text(studio, who(studio, owner, request), adapter, text)

    cls_inputs = [ctx.owner, ctx["cls_adapter"], ctx["cls_text"]]
    ctx["cls_go"].click(friendly(classify), cls_inputs, ctx["cls_out"], api_name="classify")
    ctx["cls_text"].submit(friendly(classify), cls_inputs, ctx["cls_out"], api_visibility="private")

    def chat(owner, adapter: str, base_model: str, message: str, history: list, request: gr.Request):
        owner = who(studio, owner, request)
        stops[request.session_hash] = event = threading.Event()
        name = None if adapter in (None, "", h.NONE) else adapter
        pieces = studio.chat(name, base_model, message, stop=event, owner=owner)  # checks first
        history = [*(history or []), {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        try:
            for piece in pieces:
                history[-1]["content"] += piece
                yield history, ""
        finally:  # done, or the visitor left (gradio closes this generator): either way the row stops
            event.set()
            stops.pop(request.session_hash, None)
        if pieces.repeated:  # the loop stays in the answer; the visitor learns what it means
            gr.Warning(REPETITION_WARNING)

    ctx["chat_adapter"].change(
        lambda adapter: gr.update(visible=adapter in (None, "", h.NONE)),
        ctx["chat_adapter"],
        ctx["chat_base"],
        api_visibility="private",
    )
    chat_inputs = [ctx.owner, ctx["chat_adapter"], ctx["chat_base"], ctx["chat_msg"], ctx["chatbot"]]
    chat_outputs = [ctx["chatbot"], ctx["chat_msg"]]
    ctx["chat_send"].click(friendly(chat), chat_inputs, chat_outputs, api_name="chat")
    ctx["chat_msg"].submit(friendly(chat), chat_inputs, chat_outputs, api_visibility="private")

    def stop_chat(request: gr.Request):
        if request.session_hash in stops:
            stops.pop(request.session_hash).set()

    ctx["chat_stop"].click(stop_chat, None, None, api_visibility="private")

    @gpu
    def route(owner, router: str, message: str, rate: float, handoff: str, request: gr.Request):
        owner = who(studio, owner, request)
        handoff = (handoff or "").strip() or None
        head, chosen = u.route_head(studio, owner, router, message, rate, handoff)
        base = studio.fallback_base(owner) if chosen.fallback else ""
        if chosen.fallback and (handoff or base is None):  # a fixed message, or nothing to answer with yet
            yield head, handoff or ""
            return
        answer, stop = "", threading.Event()
        try:
            for piece in studio.chat(chosen.target, base, message, stop=stop, owner=owner):
                answer += piece
                yield head, answer
        finally:  # the visitor left: stop the row
            stop.set()

    route_settings = [ctx["route_rate"], ctx["route_handoff"]]
    ctx["route_go"].click(
        friendly(route),
        [ctx.owner, ctx["router"], ctx["route_msg"], *route_settings],
        [ctx["route_md"], ctx["route_answer"]],
        api_name="route",
    )

    @gpu
    def route_many(owner, router: str, messages: str, rate: float, handoff: str, request: gr.Request):
        owner = who(studio, owner, request)
        return u.route_table(studio, owner, router, messages, rate, (handoff or "").strip() or None)

    ctx["route_many_go"].click(
        friendly(route_many),
        [ctx.owner, ctx["router"], ctx["route_many_msgs"], *route_settings],
        ctx["route_many_out"],
        api_name="route_many",
    )

    def calibrated(owner, router: str, request: gr.Request):
        return u.router_rate(studio, who(studio, owner, request), router)

    def rate_note(owner, router: str, rate: float, request: gr.Request):
        return u.rate_note(studio, who(studio, owner, request), router, rate)

    ctx["router"].change(friendly(calibrated), [ctx.owner, ctx["router"]], ctx["route_rate"], api_visibility="private")

    def departments(owner, router: str, request: gr.Request):
        return u.department_map(studio, who(studio, owner, request), router)

    def departments_now(owner, router: str, request: gr.Request):  # a new department shows at once
        return u.department_map(studio, who(studio, owner, request), router, missing_ok=True)

    for changed, handler in ((ctx["router"].change, departments), (ctx.library_changed.change, departments_now)):
        changed(
            friendly(handler), [ctx.owner, ctx["router"]], [ctx["route_map_md"], ctx["route_map"]],
            api_visibility="private",
        )  # fmt: skip
    ctx["route_rate"].change(
        friendly(rate_note), [ctx.owner, ctx["router"], ctx["route_rate"]], ctx["route_rate_md"],
        api_visibility="private",
    )  # fmt: skip

    def origin(request: gr.Request) -> str:
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "127.0.0.1:7860")
        scheme = request.headers.get("x-forwarded-proto") or ("https" if ".hf.space" in host else "http")
        return f"{scheme}://{host}"

    def api_help(owner, request: gr.Request):
        return u.api_help(studio, who(studio, owner, request), origin(request))

    def api_revoke(owner, request: gr.Request):
        return u.revoke_and_help(studio, who(studio, owner, request), origin(request))

    ctx["api_show"].click(friendly(api_help), ctx.owner, ctx["api_md"], api_visibility="private")
    ctx["api_revoke"].click(friendly(api_revoke), ctx.owner, ctx["api_md"], api_visibility="private")
