"""Tab 4, Train: start and stop the visitor's runs, the live curve, what a run learned (per-class scores, the
confusion matrix and mistakes; sample answers beside the base's), sweeps, the queue, and past runs."""

from __future__ import annotations

import gradio as gr

from .. import report_view as rv
from .. import settings as st
from .. import summary_view as sv
from .. import train_view as h
from .. import zerogpu
from ..hardware import hardware
from . import inputs, sweep
from .common import Ctx, friendly, who

CPU_WHEN_AWAY = "Go on on the CPU (slower) instead of pausing when I leave or my GPU quota runs out"


def build(ctx: Ctx) -> None:
    with gr.Tab("4 · Train", id="train"):
        run_md = gr.Markdown(sv.run_summary(ctx.studio, "", None, {}))
        with gr.Row():
            start = gr.Button("Start training", variant="primary", interactive=False)
            stop = gr.Button("Stop", variant="stop")
        cpu_when_away = gr.Checkbox(
            False,
            label=CPU_WHEN_AWAY,
            info="ZeroGPU lends its GPU only to your own requests: without this, a run pauses when you leave "
            "or your daily GPU quota runs out, and Past runs → Resume goes on later.",
            visible=hardware().kind == "zero-gpu",
        )
        action_md = gr.Markdown()  # what Stop did; the status line below stays the run's own
        status_md = gr.Markdown("No run yet: start one above.")
        plot = gr.Plot(label="Training curve")
        samples = gr.Dataframe(
            rv.samples_table([]),
            label="Sample answers at the latest evaluation: the bare base model beside the adapter",
            interactive=False,
            wrap=True,
            column_widths=["30%", "35%", "35%"],  # without them, long answers pushed the adapter's off screen
            visible=False,
        )
        scores_md = gr.Markdown(visible=False)  # an instruction run's answer scores, once it has ended
        with gr.Column(visible=False) as report_box:
            report_md = gr.Markdown()
            with gr.Row():
                confusion = gr.Plot(label="Confusion matrix")
                per_class = gr.Dataframe(
                    rv.per_class_table(None), label="Per class (validation)", interactive=False, wrap=True
                )
            misclassified = gr.Dataframe(
                rv.misclassified_table(None),
                label="Misclassified validation examples, the most confident mistakes first",
                interactive=False,
                wrap=True,
                column_widths=["58%", "14%", "14%", "14%"],
                max_height=320,
            )
        queue_md = gr.Markdown()
        timer = gr.Timer(1.0)
        seen_done = gr.State(None)
        drawn = gr.State(None)  # what the chart and status last showed (train_view.drawn_key)
        sweep.build(ctx)
        with gr.Accordion("Past runs (kept across restarts)", open=False):
            with gr.Row():
                past = gr.Dropdown([], label="Run", scale=3, allow_custom_value=True)
                past_show = gr.Button("Show", scale=1)
                past_resume = gr.Button("Resume", scale=1, interactive=False)
            past_md = gr.Markdown()
            past_plot = gr.Plot(label="Its curve")
            past_scores = gr.Markdown(visible=False)
            with gr.Column(visible=False) as past_report:
                past_confusion = gr.Plot(label="Confusion matrix (validation)")
                past_per_class = gr.Dataframe(
                    rv.per_class_table(None), label="Per class (validation)", interactive=False, wrap=True
                )
    ctx.add(
        run_md=run_md,
        cpu_when_away=cpu_when_away,
        start=start,
        stop=stop,
        status_md=status_md,
        action_md=action_md,
        plot=plot,
        queue_md=queue_md,
        timer=timer,
        seen_done=seen_done,
        drawn=drawn,
        past=past,
        past_show=past_show,
        past_md=past_md,
        past_plot=past_plot,
        past_resume=past_resume,
        past_report=past_report,
        past_confusion=past_confusion,
        past_per_class=past_per_class,
        samples=samples,
        scores_md=scores_md,
        past_scores=past_scores,
        report_box=report_box,
        report_md=report_md,
        confusion=confusion,
        per_class=per_class,
        misclassified=misclassified,
    )


def summary_keys() -> tuple[str, ...]:
    """The Adapter tab's inputs that the run summary reads: every setting of the form, and the auto toggle."""
    return (*st.form_settings(), st.AUTO)


def wire(ctx: Ctx) -> None:
    studio = ctx.studio

    def start_training(owner, source, base_model: str, task: str, name: str, request: gr.Request = None, **form):
        cpu = bool(form.pop("cpu_when_away", False))
        settings, mapping = inputs.split_form(form)
        owner = who(studio, owner, request)
        job, notes = h.start_training(studio, owner, base_model, source, task, mapping, name, settings, cpu)
        gr.Info(" ".join([*notes, "Training started; it runs in the background, so you can leave and come back."]))
        return job, job, None, f"Queued run `{job}`.", "", gr.update(interactive=False)

    params = inputs.form_params(list(st.form_settings()))
    params["cpu_when_away"] = f"ZeroGPU only: {CPU_WHEN_AWAY[0].lower()}{CPU_WHEN_AWAY[1:]} (default: pause)"
    inputs.takes_settings(
        start_training,
        params,
        "Queue a training run on the data loaded with /use_sample or /load_data in this session. With `auto`, "
        "batch size, epochs and learning rate are chosen from the data by the preset's recipe. `mode`: "
        f"{', '.join(st.form_settings()['mode'].labels.values())}; `continue_from`: an adapter of the caller's "
        "library to go on training (empty: a fresh one). Returns the run's id first.",
    )
    ctx["start"].click(
        friendly(start_training),
        [ctx.owner, ctx.source, ctx["base"], ctx["task"], ctx["name"]],
        [ctx.job_id, ctx.remembered_job, ctx["seen_done"], ctx["status_md"], ctx["action_md"], ctx["start"]],
        inputs_kwargs=inputs.form_components(ctx, params),
        api_name="start_training",
    )

    def summary(owner, job_id, base_model, source, *values, request: gr.Request = None):
        settings = dict(zip(summary_keys(), values, strict=True))
        owner = who(studio, owner, request)
        running = h.running(studio, owner, job_id)  # its time left is the progress line's: one figure on show
        text = sv.run_summary(studio, base_model, source, settings, running)  # names what auto chooses
        return text, gr.update(interactive=sv.can_start(studio, base_model, source, owner, job_id))

    settings_inputs = [ctx[k] for k in summary_keys()]
    summary_inputs = [ctx.owner, ctx.job_id, ctx["base"], ctx.source, *settings_inputs]
    # A run started or ended (seen_done) changes what Start may do, and whose time is on show.
    summary_triggers = [ctx["load"].click, ctx.job_id.change, ctx["seen_done"].change]
    summary_triggers += [c.change for c in settings_inputs]
    gr.on(summary_triggers, friendly(summary), summary_inputs, [ctx["run_md"], ctx["start"]], api_visibility="private")

    # A new file: say so at once, since sizing its run may load a model first (seconds), rather than leave
    # the last file's summary, or "Load a data file", on show meanwhile.
    def sizing(source):
        return sv.sizing_note(studio, source), gr.update(interactive=False)

    ctx.source.change(
        sizing, ctx.source, [ctx["run_md"], ctx["start"]], api_visibility="private", show_progress="hidden"
    ).then(friendly(summary), summary_inputs, [ctx["run_md"], ctx["start"]], api_visibility="private")

    def stop_training(owner, job_id, request: gr.Request) -> str:
        return h.stop_training(studio, who(studio, owner, request), job_id)

    ctx["stop"].click(friendly(stop_training), [ctx.owner, ctx.job_id], ctx["action_md"], api_name="stop_training")

    def training_status(job_id: str = "", request: gr.Request = None) -> str:
        """The progress line of one of the caller's runs (default: their latest), for API clients."""
        owner = who(studio, None, request)
        zerogpu.drive(studio.jobs.leases, owner)  # on ZeroGPU, a polling client's run goes on in its requests
        return h.progress(studio, owner, job_id or h.reattach(studio, owner, None))["status"]

    gr.api(friendly(training_status), api_name="training_status")

    report_outputs = [
        ctx[k] for k in ("samples", "report_box", "report_md", "confusion", "per_class", "misclassified", "scores_md")
    ]

    def tick(owner, job_id, seen, changed, drawn, base_model, source, request: gr.Request):
        owner = who(studio, owner, request)
        zerogpu.drive(studio.jobs.leases, owner)  # on ZeroGPU, an open page's run goes on in its ticks
        key = None if job_id is None or job_id == seen else h.drawn_key(studio, owner, job_id)
        if key is None or key == drawn:  # nothing new to draw: only the queue may have moved
            return [gr.update(), gr.update(), h.queue_text(studio, owner), seen, changed, drawn] + [gr.update()] * 8
        info = h.progress(studio, owner, job_id)
        shown = [info["figure"], info["status"], info["queue"]]
        if info["done"]:  # drawn once more, then left alone; the pickers learn of its adapter; Start is free
            start = gr.update(interactive=sv.can_start(studio, base_model, source))
            return [*shown, job_id, (changed or 0) + 1, key, *run_outputs(info), start]
        return [*shown, seen, changed, key, *run_outputs(info), gr.update(interactive=False)]

    ctx["timer"].tick(
        friendly(tick),
        [ctx.owner, ctx.job_id, ctx["seen_done"], ctx.library_changed, ctx["drawn"], ctx["base"], ctx.source],
        [
            ctx["plot"],
            ctx["status_md"],
            ctx["queue_md"],
            ctx["seen_done"],
            ctx.library_changed,
            ctx["drawn"],
            *report_outputs,
            ctx["start"],
        ],  # fmt: skip
        show_progress="hidden",
        api_visibility="private",
    )

    def run_report(run_id: str, request: gr.Request = None) -> dict:
        """A finished classification run's per-class report (for API clients): `per_class` (precision,
        recall, F1, support per label), `confusion` (rows true, columns predicted, in `labels` order),
        `order`, and `misclassified` validation rows; empty for a run without one."""
        return studio.run_report(run_id, who(studio, None, request)) or {}

    gr.api(friendly(run_report), api_name="run_report")

    def list_runs(owner, request: gr.Request):
        return gr.update(choices=h.past_runs(studio, who(studio, owner, request)))

    ctx["past"].focus(friendly(list_runs), ctx.owner, ctx["past"], api_visibility="private")

    def show_run(owner, run_id, request: gr.Request):
        shown = h.show_past_run(studio, who(studio, owner, request), run_id)
        report = shown["report"]
        return (
            shown["text"],
            shown["figure"],
            gr.update(interactive=shown["resumable"]),
            gr.update(visible=report is not None),
            rv.confusion_figure(report),
            rv.per_class_table(report),
            gr.update(value=rv.answer_scores_text(shown["answer_scores"]), visible=bool(shown["answer_scores"])),
        )

    shown = [
        ctx[k]
        for k in (
            "past_md",
            "past_plot",
            "past_resume",
            "past_report",
            "past_confusion",
            "past_per_class",
            "past_scores",
        )
    ]
    ctx["past_show"].click(friendly(show_run), [ctx.owner, ctx["past"]], shown, api_name="show_run")

    def resume_run(owner, run_id, cpu_when_away: bool = False, request: gr.Request = None):
        """Go on with one of the caller's stopped or interrupted runs from its last checkpoint (optimizer,
        schedule, data order and step); its live curve shows above like a new run's. On ZeroGPU,
        `cpu_when_away` has it go on on the CPU where it would pause (you gone, or out of GPU quota)."""
        job = h.resume_run(studio, who(studio, owner, request), run_id, bool(cpu_when_away))
        gr.Info("Resumed: the run goes on from its last checkpoint, in the background.")
        return job, job, None, f"Resuming run `{job}`.", "", gr.update(interactive=False), gr.update(interactive=False)

    ctx["past_resume"].click(
        friendly(resume_run),
        [ctx.owner, ctx["past"], ctx["cpu_when_away"]],
        [
            ctx.job_id,
            ctx.remembered_job,
            ctx["seen_done"],
            ctx["status_md"],
            ctx["action_md"],
            ctx["past_resume"],
            ctx["start"],
        ],
        api_name="resume_run",
    )
    sweep.wire(ctx)


def run_outputs(info: dict) -> list:
    """The samples table (instruction runs, updated at each evaluation) and, once a classification run
    has ended, its report: summary, confusion matrix, per-class table and misclassified examples; last,
    an instruction run's answer scores once it has ended."""
    instruction = info["task"] == "instruction"
    samples = gr.update(value=rv.samples_table(info["samples"]), visible=instruction and bool(info["samples"]))
    scores = info.get("answer_scores")
    scores = gr.update(value=rv.answer_scores_text(scores), visible=bool(scores))
    report = info["report"] if info["done"] else None
    if report is None:
        return [samples, gr.update(visible=False)] + [gr.update()] * 4 + [scores]
    return [
        samples,
        gr.update(visible=True),
        rv.report_summary(report),
        rv.confusion_figure(report),
        rv.per_class_table(report),
        misclassified(report),
        scores,
    ]


def misclassified(report: dict) -> dict:
    """The misclassified table, hidden when the model got every validation row right (only headers)."""
    table = rv.misclassified_table(report)
    return gr.update(value=table, visible=not table.empty)
