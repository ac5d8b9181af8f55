"""Tab 3, Adapter: the first screen says what trains in plain words (the preset, the adapter's size, its
name), then what trains (adapter, head only, full fine-tuning) and how long, with a live size estimate.
Where the adapter sits, its activation and scaling, the seed, early stopping and tracking wait in the
closed "Advanced" accordion. Every setting the declarations place in the studio is here: main ones in the
rows below, advanced ones in the accordion."""

from __future__ import annotations

import gradio as gr

from .. import settings as st
from .. import train_view as h
from . import inputs
from .common import Ctx, friendly, who

FRESH = ("a fresh adapter", "")  # Continue training from: nothing
ADVANCED = "Advanced adapter options"


# Layout only: the first screen, the rows under it, the accordion's first inputs (the others follow in
# the declarations' order), and how an input looks here (a slider's range, a minimum of the form's own).
# Labels, help, choices, defaults and bounds come from the settings' declarations.
FIRST = ("bottleneck",)  # beside it, the adapter's name
ROWS = (("lr", "epochs", "batch_size"), ("max_length",))
ADVANCED_FIRST = ("placement", "activation", "scaling", "seed", "patience", "report_to")
PER_ROW = 3
LAYOUT = {
    "bottleneck": {"slider": (4, 512, 4)},
    "batch_size": {"slider": (1, 128, 1)},
    "max_length": {"slider": (16, 1024, 16)},
    "epochs": {"minimum": 0.05},
}
SPECIAL = ("preset", "mode", st.CONTINUE)  # made below, each its own way
PRESET_SET = ("bottleneck", "lr", "epochs", "batch_size", "placement", "activation")  # changing one makes it Custom


def advanced_keys() -> list[str]:
    """The accordion's settings, in the order it shows them."""
    advanced = [k for k, s in st.form_settings().items() if s.studio == "advanced" and k not in SPECIAL]
    return [k for k in ADVANCED_FIRST if k in advanced] + [k for k in advanced if k not in ADVANCED_FIRST]


def build(ctx: Ctx) -> None:
    policy = ctx.studio.policy
    form = st.form_settings()
    made: dict = {}

    def put(*keys: str) -> None:
        for key in keys:
            layout = {**LAYOUT.get(key, {}), **({"visible": False} if key in st.sized_keys() else {})}
            made[key] = inputs.component(form[key], policy, **layout)

    with gr.Tab("3 · Adapter", id="adapter"):
        made["preset"] = gr.Radio(
            [*h.PRESETS, h.CUSTOM],
            label=form["preset"].label,
            value=h.DEFAULT_PRESET,
            info=form["preset"].help + " Changing a setting below makes it Custom.",
        )
        with gr.Row():
            put(*FIRST)
            name = gr.Textbox(
                label="Adapter name",
                placeholder="e.g. routing (default: file name + r); letters, digits, spaces, '_' and '-'",
            )
        mode = form["mode"]  # its picker shows labels, as the API takes them
        made["mode"] = gr.Radio(
            list(mode.labels.values()), value=mode.labels[mode.default], label=mode.label, info=mode.help
        )
        made[st.AUTO] = gr.Checkbox(
            True,
            label="Size the run from the data (recommended)",
            info="Picks batch size, epochs and learning rate so that even a small file gets enough "
            "optimizer steps to learn (the Train tab shows them); untick to set them yourself",
        )
        for row in ROWS:
            with gr.Row():
                put(*row)
        laid_out = {*FIRST, *(k for row in ROWS for k in row)}
        rest = [k for k, s in form.items() if s.studio == "main" and k not in laid_out and k not in SPECIAL]
        if rest:
            with gr.Row():
                put(*rest)
        with gr.Accordion(ADVANCED, open=False):
            keys = advanced_keys()
            for i in range(0, len(keys), PER_ROW):
                with gr.Row():
                    put(*keys[i : i + PER_ROW])
            made[st.CONTINUE] = gr.Dropdown(
                [FRESH],
                value="",
                label=form[st.CONTINUE].label,
                info=form[st.CONTINUE].help,
                allow_custom_value=True,
            )
        estimate_md = gr.Markdown()
    ctx.add(**made, name=name, estimate_md=estimate_md)


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    def apply_preset(p):
        if p not in h.PRESETS:
            return [gr.update()] * 3
        preset = h.PRESETS[p]  # with auto on, the run summary shows the epochs and rate it chooses
        return preset.bottleneck, preset.epochs, gr.update()

    ctx["preset"].input(
        apply_preset, ctx["preset"], [ctx["bottleneck"], ctx["epochs"], ctx["lr"]], api_visibility="private"
    )
    for setting in PRESET_SET:
        ctx[setting].input(lambda: h.CUSTOM, None, ctx["preset"], api_visibility="private")

    size = st.form_settings()["bottleneck"]

    def size_words(bottleneck):  # "Medium adapter, r = 64. How much the adapter can learn..."
        return gr.update(info=st.info_for(size, studio.policy.public, bottleneck))

    ctx["bottleneck"].change(size_words, ctx["bottleneck"], ctx["bottleneck"], api_visibility="private")

    sized = [ctx[k] for k in st.sized_keys()]

    def toggle_auto(auto):  # on auto the run summary (Train tab) names the values it chooses
        return [gr.update(visible=not auto)] * len(sized)

    ctx[st.AUTO].input(toggle_auto, ctx[st.AUTO], sized, api_visibility="private")

    def estimate(base_model, bottleneck, placement, labels, mode, leave_out):
        settings = {"mode": mode, "leave_out": leave_out}
        return h.estimate(studio, base_model, bottleneck, placement, len(labels or []), settings)

    inputs = [ctx["base"], ctx["bottleneck"], ctx["placement"], ctx.labels, ctx["mode"], ctx["leave_out"]]
    triggers = [ctx[k].change for k in ("bottleneck", "placement", "mode")] + [ctx.labels.change, ctx["load"].click]
    gr.on(
        [*triggers, ctx["leave_out"].blur, ctx["leave_out"].submit],
        friendly(estimate),
        inputs,
        ctx["estimate_md"],
        api_visibility="private",
    )

    def library_choices(owner, task, request: gr.Request):
        owner = who(studio, owner, request)
        names = studio.library.names(task or "classification", owner=studio.owner(owner))
        return gr.update(choices=[FRESH, *((n, n) for n in names)])

    ctx["continue_from"].focus(
        friendly(library_choices), [ctx.owner, ctx["task"]], ctx["continue_from"], api_visibility="private"
    )
