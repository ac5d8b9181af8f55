"""The Train tab's Sweep: a small grid of runs in one click, their results as they finish, and only the
best adapter saved to the library (`studio/sweeps.py` holds the logic)."""

from __future__ import annotations

import gradio as gr

from .. import sweeps as sw
from .common import COLUMNS, Ctx, friendly, who

DEFAULT_BOTTLENECKS = ["16", "64"]


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
        with gr.Row():
            bottlenecks = gr.Dropdown(
                [str(b) for b in sw.BOTTLENECKS],
                value=DEFAULT_BOTTLENECKS,
                multiselect=True,
                allow_custom_value=True,
                label="Bottlenecks r",
                info="Pick or type widths",
            )
            lrs = gr.Dropdown(
                sw.lr_choices("classification", None),
                value=sw.default_lrs("classification", None),
                multiselect=True,
                allow_custom_value=True,
                label="Learning rates",
                info="The preset's rate and half of it; pick or type others",
            )
            placements = gr.Dropdown(
                list(sw.PLACEMENTS),
                value=[],
                multiselect=True,
                label="Placements (optional)",
                info="Empty: the placement set above",
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
    ctx.add(bottlenecks=bottlenecks, lrs=lrs, placements=placements, sweep_patience=sweep_patience)
    ctx.add(sweep_go=sweep_go, sweep_stop=sweep_stop, sweep_md=sweep_md, sweep_table=sweep_table)
    ctx.add(sweep_group=gr.State(None), sweep_seen=gr.State(None))


def wire(ctx: Ctx) -> None:
    from .train import settings_of

    studio = ctx.studio

    def sweep(
        owner, source, base_model: str, task: str, name: str, bottlenecks: list[str] | str = "16, 64",
        lrs: list[str] | str = "", placements: list[str] | None = None, patience: int = 2,
        text_column: str | None = None, label_column: str | None = None, instruction_column: str | None = None,
        response_column: str | None = None, input_column: str | None = None, system_column: str | None = None,
        bottleneck: int = 64, placement: str = "houlsby", activation: str = "gelu", lr: float = 2e-3,
        epochs: float = 4, batch_size: int = 32, max_length: int = 128, seed: int = 42, auto: bool = True,
        preset: str = "", report_to: str = "none", init: str = "normal", scaling: float | None = None,
        leave_out: str = "", request: gr.Request = None,
    ):  # fmt: skip
        """Queue a sweep on the data loaded with /use_sample or /load_data in this session: one run per
        bottleneck x learning rate (x placement), each stopping early after `patience` evaluations without
        improvement; the other settings are those of /start_training. When its last run ends, only the best
        adapter is saved to the library, as `<name>-best`. Returns the sweep's id first (for /sweep_results)."""
        columns = (text_column, label_column, instruction_column, response_column, input_column, system_column)
        mapping = {c: v for c, v in zip(COLUMNS, columns, strict=True) if v}
        settings = settings_of(
            bottleneck, placement, activation, lr, epochs, batch_size, max_length, seed, auto, preset,
            "Adapter", 0, report_to, init, scaling, leave_out, None,
        )  # fmt: skip
        owner = who(studio, owner, request)
        rates = lrs or sw.default_lrs(task, preset)
        configs = sw.sweep_grid(
            studio, base_model, source, task, mapping, name, settings, bottlenecks, rates, placements, patience
        )
        run = studio.submit_sweep(configs, name or sw.default_name(source), owner)[0]
        gr.Info(f"Queued a sweep of {len(configs)} runs; they train one after another.")
        first = run.job_ids[0]
        return run.group, first, first, None, *sw.sweep_results(studio, owner, run.group)

    inputs = [ctx.owner, ctx.source, ctx["base"], ctx["task"], ctx["name"]]
    inputs += [ctx[k] for k in ("bottlenecks", "lrs", "placements", "sweep_patience")]
    inputs += [*ctx["columns"].values()]
    inputs += [ctx[k] for k in ("bottleneck", "placement", "activation", "lr", "epochs", "batch", "max_length")]
    inputs += [ctx[k] for k in ("seed", "auto", "preset", "report_to", "init", "scaling", "leave_out")]
    outputs = [
        ctx["sweep_group"],
        ctx.job_id,
        ctx.remembered_job,
        ctx["seen_done"],
        ctx["sweep_table"],
        ctx["sweep_md"],
    ]
    ctx["sweep_go"].click(friendly(sweep), inputs, outputs, api_name="sweep")

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
        return gr.update(choices=sw.lr_choices(task, preset), value=sw.default_lrs(task, preset))

    gr.on(
        [ctx["task"].change, ctx["preset"].change],
        lr_defaults,
        [ctx["task"], ctx["preset"]],
        ctx["lrs"],
        api_visibility="private",
    )
