"""The wizard's state in the visitor's browser: model, data, column mapping, settings and tab survive a
reload. The browser keeps a sample's name or an upload's token, never a server path; an upload gone
from the server asks for a fresh one."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .. import data_view as dv
from .. import hub_view as hv
from .. import settings as st
from .. import train_view as h
from .common import COLUMNS, Ctx, who
from .data import cleared, data_outputs, show

TAB_IDS = ("model", "data", "adapter", "train", "use", "compare", "library")
# The Adapter tab's inputs that a reload restores: every setting of the form but the adapter to continue
# (a library name, which may be gone by the next visit), and the auto toggle. A state saved before a
# setting existed restores without it; one saved under an older key restores under the new one.
SETTINGS = (*(k for k in st.form_settings() if k != st.CONTINUE), st.AUTO)
RENAMED = {"batch": "batch_size"}


def wire(ctx: Ctx, loaded) -> None:
    """Save the wizard on every change; restore it once the page has identified its visitor (`loaded`)."""
    studio = ctx.studio
    columns = list(ctx["columns"].values())
    settings = [ctx[k] for k in SETTINGS]

    def save(tab, base, task, source, name, *values):
        cols, rest = values[: len(COLUMNS)], values[len(COLUMNS) :]
        ref = (source or {}).get("ref")
        return {
            "base": base,
            "task": task,
            "data": ref,
            "columns": {c: v for c, v in zip(COLUMNS, cols, strict=True) if v},
            "settings": dict(zip(SETTINGS, rest, strict=True)),
            "name": name,
            "tab": tab,
        }

    inputs = [ctx["tab"], ctx["base"], ctx["task"], ctx.source, ctx["name"], *columns, *settings]
    triggers = [c.change for c in (ctx["tab"], ctx["base"], ctx["task"], ctx.source, ctx["name"], *columns, *settings)]
    gr.on(triggers, save, inputs, ctx["wizard"], api_visibility="private", show_progress="hidden")

    def remember_tab(evt: gr.SelectData):
        return TAB_IDS[evt.index] if isinstance(evt.index, int) and 0 <= evt.index < len(TAB_IDS) else "model"

    ctx["tabs"].select(remember_tab, None, ctx["tab"], api_visibility="private")

    def restore(owner, saved: dict | None, job_id, request: gr.Request) -> list[Any]:
        owner = who(studio, owner, request)
        saved = saved if isinstance(saved, dict) else {}
        active = job_id and not studio.jobs.get(job_id, owner=studio.owner(owner)).finished.is_set()
        if not saved and not active:  # a first visit: nothing to restore, and the visitor may be at work already
            return [gr.update()] * (3 + len(SETTINGS) + len(data_outputs(ctx))) + [None]
        base = saved.get("base") if saved.get("base") in h.model_choices(studio) or not studio.policy.public else None
        base = base or h.model_choices(studio)[0]
        task = saved.get("task") if saved.get("task") in ("classification", "instruction") else "classification"
        stored = saved.get("settings") if isinstance(saved.get("settings"), dict) else {}
        stored = {RENAMED.get(k, k): v for k, v in stored.items()}
        values = [stored.get(k, gr.update()) for k in SETTINGS]
        if isinstance(stored.get(st.AUTO), bool):  # the Adapter tab's toggle runs on .input only, not here
            for k in st.sized_keys():
                i = SETTINGS.index(k)
                values[i] = gr.update(visible=not stored[st.AUTO], **({"value": stored[k]} if k in stored else {}))
        max_length = stored.get("max_length") or 128
        source = _source(studio, saved.get("data"), owner)
        mapping = saved.get("columns") if isinstance(saved.get("columns"), dict) else {}
        if source is None and isinstance(saved.get("data"), dict):
            data = cleared(task, "Your uploaded file is no longer on the server; upload it again (step 2).")
        elif source is None:
            data = [gr.update()] * len(data_outputs(ctx))
        else:
            data = show(studio, source, task, base, max_length, mapping)
        tab = "train" if active else saved.get("tab") if saved.get("tab") in TAB_IDS else "model"
        return [base, _described(studio, base), saved.get("name") or "", *values, *data, tab]

    def go_to(clicked, tab):
        """The restored tab, unless the visitor picked one while the restore ran (it takes seconds on a
        busy server): the page must not jump away from where they went."""
        if clicked is not None or tab is None:
            return gr.update(), gr.update()
        return gr.Tabs(selected=tab), tab

    restored_tab = gr.State(None)
    loaded.then(
        restore,
        [ctx.owner, ctx["wizard"], ctx.job_id],
        [ctx["base"], ctx["model_md"], ctx["name"], *settings, *data_outputs(ctx), restored_tab],
        api_visibility="private",
        show_progress="hidden",
    ).then(
        go_to, [ctx["tab"], restored_tab], [ctx["tabs"], ctx["tab"]], api_visibility="private", show_progress="hidden"
    )


def _described(studio, base: str) -> Any:
    """The Model tab's description of the restored base, as Load model showed it before the reload."""
    try:
        return h.describe_model(studio, base)
    except Exception:  # a hub id gone, or no network now: the tab keeps asking to load one
        return gr.update()


def _source(studio, ref: Any, owner: str | None) -> dict | None:
    """The data file a stored reference points to, if this visitor may still use it."""
    if not isinstance(ref, dict):
        return None
    if ref.get("sample") in dv.SAMPLES:
        return {**dv.sample_source(ref["sample"]), "ref": {"sample": ref["sample"]}}
    if isinstance(ref.get("hub"), str):  # pinned to a commit: read again from the Hugging Face cache
        try:
            return {**hv.hub_source(studio, ref["hub"], ref.get("config"), ref.get("split"), owner), "ref": ref}
        except Exception:
            return None
    path = studio.recall_upload(ref.get("upload"), owner)
    if path is None:
        return None
    return {"path": str(path), "name": ref.get("name") or path.name, "ref": ref}
