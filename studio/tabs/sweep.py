"""The Train tab's Sweep: a small grid of runs in one click, their results as they finish, and only the
best adapter saved to the library (`studio/sweeps.py` holds the logic)."""

from __future__ import annotations

import gradio as gr

from .. import settings as st
from .. import sweeps as sw
from . import inputs
from .common import Ctx, friendly, who

PATIENCE_HELP = "Evaluations without improvement before each run of the sweep stops"


def build(ctx: Ctx) -> None:
    policy = ctx.studio.policy
    limit = f" (at most {policy.max_sweep_runs} runs here)" if policy.public else ""
    with gr.Accordion("Sweep: try a few adapter shapes and keep the best", open=False):
        gr.Markdown(
            "Queues one run per bottleneck x learning rate (x placement) on the data and settings above"
            f"{limit}, each stopping early when its validation score stops improving. The table fills as runs "
            "finish, best first; when the last ends, only the best adapter is saved to the library, as "
            "*name*-best. The others stay in their run folders (Past runs, Compare → Runs)."
        )
        grid = {}
        with gr.Row():
            for key, s in st.grid_settings().items():  # one list per setting a sweep may vary
                choices, picked = sw.grid_choices(s, "classification", None)
                grid[f"{key}s"] = gr.Dropdown(
                    choices,
                    value=picked,
                    multiselect=True,
                    allow_custom_value=not s.choices,
                    label=f"{s.label}: values to try",
                    info="Empty: the one set above" if s.choices else "Pick or type values",
                )
            sweep_patience = gr.Number(
                2, label="Patience", precision=0, minimum=1, maximum=20, info="Evaluations without improvement"
            )
        with gr.Row():
            sweep_go = gr.Button("Queue sweep", variant="primary")
            sweep_stop = gr.Button("Stop sweep", variant="stop")
        sweep_md = gr.Markdown()
        sweep_table = gr.Dataframe(
            sw.sweep_results_empty(), label="Sweep results, best first", interactive=False, wrap=True
        )
    ctx.add(**grid, sweep_patience=sweep_patience)
    ctx.add(sweep_go=sweep_go, sweep_stop=sweep_stop, sweep_md=sweep_md, sweep_table=sweep_table)
    ctx.add(sweep_group=gr.State(None), sweep_seen=gr.State(None))


def wire(ctx: Ctx) -> None:
    studio = ctx.studio
    grid = {f"{key}s": s for key, s in st.grid_settings().items()}

    def sweep(owner, source, base_model: str, task: str, name: str, request: gr.Request = None, **form):
        lists = {grid[k].name: form.pop(k) for k in grid}
        patience = form.pop("patience")
        settings, mapping = inputs.split_form(form)
        owner = who(studio, owner, request)
        rates = lists["lr"] or sw.default_lrs(task, settings.get("preset"))
        configs = sw.sweep_grid(
            studio, base_model, source, task, mapping, name, settings, lists["bottleneck"], rates,
            lists["placement"], patience,
        )  # fmt: skip
        queued = studio.submit_sweep(configs, name or sw.default_name(source), owner)[0]
        gr.Info(f"Queued a sweep of {len(configs)} runs; they train one after another.")
        first = queued.run_ids[0]
        return queued.id, first, first, None, *sw.sweep_results(studio, owner, queued.id)

    lists = {k: f"{s.label}: the values to try, a list (or comma-separated text)" for k, s in grid.items()}
    params = {**lists, "patience": PATIENCE_HELP, **inputs.form_params(list(st.sweep_settings()))}
    inputs.takes_settings(
        sweep,
        params,
        "Queue a sweep on the data loaded with /use_sample or /load_data in this session: one run per "
        "bottleneck x learning rate (x placement), each stopping early after `patience` evaluations without "
        "improvement; the other settings are those of /start_training. When its last run ends, only the best "
        "adapter is saved to the library, as `<name>-best`. Returns the sweep's id first (for /sweep_results).",
    )
    components = {**{k: ctx[k] for k in grid}, "patience": ctx["sweep_patience"]}
    components |= inputs.form_components(ctx, {k: v for k, v in params.items() if k not in components})
    outputs = [
        ctx["sweep_group"],
        ctx.job_id,
        ctx.remembered_job,
        ctx["seen_done"],
        ctx["sweep_table"],
        ctx["sweep_md"],
    ]
    ctx["sweep_go"].click(
        friendly(sweep),
        [ctx.owner, ctx.source, ctx["base"], ctx["task"], ctx["name"]],
        outputs,
        inputs_kwargs=components,
        api_name="sweep",
    )

    def sweep_results(group: str = "", request: gr.Request = None) -> dict:
        """A sweep's runs, best first by the validation metric (default: the caller's newest sweep), and
        its status line (which says when the best was saved to the library, and under which name)."""
        table, text = sw.sweep_results(studio, who(studio, None, request), group or None)
        return {"status": text, "runs": table.to_dict("records")}

    gr.api(friendly(sweep_results), api_name="sweep_results")

    def follow(owner, group, seen, job_id, changed, request: gr.Request):
        """Every second while a sweep is on: its table, and the Train tab follows its running run. Once it
        has ended: drawn once more, the pickers told of its best adapter, then left alone."""
        if not group or group == seen:
            return [gr.update()] * 6
        owner = who(studio, owner, request)
        table, text = sw.sweep_results(studio, owner, group)
        running, members, ended = sw.progress(studio, owner, group)
        follow_job = running and (job_id is None or job_id in members) and job_id != running
        job = [running, running] if follow_job else [gr.update(), gr.update()]
        if ended:
            return [table, text, *job, group, (changed or 0) + 1]
        return [table, text, *job, seen, changed]

    ctx["timer"].tick(
        friendly(follow),
        [ctx.owner, ctx["sweep_group"], ctx["sweep_seen"], ctx.job_id, ctx.library_changed],
        [ctx["sweep_table"], ctx["sweep_md"], ctx.job_id, ctx.remembered_job, ctx["sweep_seen"], ctx.library_changed],
        show_progress="hidden",
        api_visibility="private",
    )

    def stop(owner, group, request: gr.Request):
        return sw.stop_sweep(studio, who(studio, owner, request), group)

    ctx["sweep_stop"].click(friendly(stop), [ctx.owner, ctx["sweep_group"]], ctx["sweep_md"], api_name="stop_sweep")

    def lr_defaults(task, preset):
        choices, picked = sw.grid_choices(grid["lrs"], task, preset)
        return gr.update(choices=choices, value=picked)

    gr.on(
        [ctx["task"].change, ctx["preset"].change],
        lr_defaults,
        [ctx["task"], ctx["preset"]],
        ctx["lrs"],
        api_visibility="private",
    )
