"""The studio's handlers as plain functions over `Studio`: no gradio here, so they are unit-tested directly.

Each returns plain values (markdown, DataFrames, figures); `ui.py` wires them to components and turns
an `AdapterError` into a `gr.Error` message.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from adapter_core import AdapterConfig, AdapterError
from adapter_core.catalog import CATALOG
from adapter_core.engine.batches import tokenize
from adapter_core.engine.data import (
    ALIASES,
    OPTIONAL,
    REQUIRED,
    describe_lengths,
    detect_columns,
    read_table,
    validate,
)
from adapter_core.engine.train import TrainConfig

from . import charts
from .gpu import device_summary, on_cpu
from .service import Studio

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLES = {
    "Support routing (classification, 480 rows)": ("support_routing.csv", "classification"),
    "Orders replies (instruction, 140 rows)": ("orders_sft.csv", "instruction"),
    "Tech support replies (instruction, 140 rows)": ("tech_support_sft.csv", "instruction"),
    "Billing replies (instruction, 140 rows)": ("billing_sft.csv", "instruction"),
}
PRESETS = {
    "Quick look (r=16, 1 epoch)": dict(bottleneck=16, epochs=1, lr=3e-3),
    "Balanced (r=64, 4 epochs)": dict(bottleneck=64, epochs=4, lr=2e-3),
    "Capacity (r=256, 4 epochs)": dict(bottleneck=256, epochs=4, lr=1e-3),
}
NONE = "(none)"


def model_choices() -> list[str]:
    return list(CATALOG)


def describe_model(studio: Studio, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise AdapterError("Pick a base model from the list, or type a hub id or local path.")
    info = studio.model_info(name)
    notice = (
        (
            "\n\n> Running on CPU: small models train in minutes; SmolLM2 instruction tuning takes a few minutes "
            "per hundred examples."
        )
        if on_cpu()
        else ""
    )
    return (
        f"**{info.name}** loaded: `{info.architecture}` ({info.model_type}, {info.family}), "
        f"{info.parameters / 1e6:.1f}M parameters, hidden size {info.hidden_size}, {info.layers} layers.  \n"
        f"Suits: {', '.join(info.tasks)}. Device: {device_summary()}.{notice}"
    )


def inspect_data(
    path: str | None, task: str, mapping: dict[str, str] | None = None, tokenizer=None, max_length: int = 128
) -> dict[str, Any]:
    """Preview, columns, detected mapping and the validation summary of a data file.

    With the base's tokenizer, the summary also gives token-length percentiles and truncations.
    """
    if not path:
        raise AdapterError("Upload a CSV, TSV or JSONL file, or pick a sample.")
    path = Path(path)
    frame = read_table(path)
    columns = detect_columns(frame, task, mapping, path.name)
    data = validate(frame, task, columns, path.name)
    if tokenizer is not None:
        ds = tokenize(data.frame, task, tokenizer, max_length, data.labels)
        describe_lengths(data.summary, ds, max_length)
    return {
        "preview": frame.head(20),
        "columns": list(frame.columns),
        "mapping": columns,
        "summary": "  \n".join(data.summary.lines()),
        "labels": data.labels or [],
    }


def detected_fields(task: str) -> list[str]:
    return list(REQUIRED[task] + OPTIONAL[task])


def alias_hint(task: str) -> str:
    return "; ".join(f"{c}: {', '.join(ALIASES[c][:4])}" for c in detected_fields(task))


def estimate(studio: Studio, base: str, bottleneck: int, placement: str, num_labels: int) -> str:
    est = studio.estimate(base, AdapterConfig(bottleneck=int(bottleneck), placement=placement), num_labels)
    return (
        f"**{est['trainable']:,}** trainable parameters = **{est['percent']:.2f}%** of the base.  \n"
        f"Adapter on disk: **{est['adapter_mb']:.2f} MB**, against {est['full_copy_mb']:.0f} MB for a full copy "
        f"of the model ({est['full_copy_mb'] / max(est['adapter_mb'], 1e-9):.0f}x smaller)."
    )


def start_training(
    studio: Studio,
    base: str,
    data_path: str | None,
    task: str,
    mapping: dict[str, str],
    name: str,
    settings: dict[str, Any],
) -> str:
    if not data_path:
        raise AdapterError("Load a data file first (step 2).")
    name = (name or "").strip() or f"{Path(data_path).stem}-r{int(settings['bottleneck'])}"
    config = TrainConfig(
        base=base,
        data=str(data_path),
        task=task,
        name=name,
        columns={k: v for k, v in mapping.items() if v},
        **settings,
    )
    return studio.jobs.submit(config).id


def progress(studio: Studio, job_id: str | None) -> dict[str, Any]:
    """Everything the train tab shows for a job: curve, progress line, queue, and whether it is done."""
    if not job_id:
        return {
            "figure": charts.training_curve([], "No run yet"),
            "status": "No run yet: start one above.",
            "queue": queue_text(studio),
            "done": True,
        }
    job = studio.jobs.get(job_id)
    step = job.latest("step")
    training = next((e for e in job.events if e["kind"] == "status" and e.get("status") == "training"), None)
    parts = [f"**{job.config.name}**: {job.status}"]
    if step:
        parts.append(
            f"step {step['step']}/{step['total_steps']}, elapsed {_clock(step['elapsed_s'])}, "
            f"ETA {_clock(step['eta_s'])}, {step['examples_per_sec']:.0f} examples/s"
        )
    if training:
        parts.append(training["info"]["device"])
    last_eval = job.latest("eval")
    if last_eval:
        parts.append(", ".join(f"{k} {v:.3f}" for k, v in last_eval["metrics"].items()))
    if job.error:
        parts.append(f"**failed:** {job.error}")
    published = job.latest("published")
    if published:
        parts.append(published["message"])
    return {
        "figure": charts.training_curve(job.events, job.config.name),
        "status": " · ".join(parts),
        "queue": queue_text(studio),
        "done": job.finished.is_set(),
    }


def past_runs(studio: Studio) -> list[str]:
    """Every run in the store, newest first, from this process or an earlier one."""
    return [run.id for run in studio.jobs.store.list()]


def show_past_run(studio: Studio, run_id: str | None) -> tuple[Any, str]:
    if not run_id:
        raise AdapterError("Pick a past run to show.")
    run = studio.jobs.store.get(run_id)
    status = run.status()
    metrics = status.get("metrics") or {}
    text = f"**{run_id}**: {status['status']}" + (f" · {status['message']}" if status.get("message") else "")
    if metrics:
        text += " · " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    if status.get("library_name"):
        text += f" · in the library as {status['library_name']!r}"
    return charts.training_curve(run.events(), run_id), text


def queue_text(studio: Studio) -> str:
    running = studio.jobs.running()
    queued = studio.jobs.queued()
    if not running and not queued:
        return "Queue: empty."
    lines = [f"Running: {running.config.name}"] if running else []
    lines += [f"{i}. queued: {j.config.name}" for i, j in enumerate(queued, 1)]
    return "  \n".join(lines)


def reattach(studio: Studio, remembered: str | None) -> str | None:
    """After a reload: the job this browser started, else the one running, else the newest."""
    known = {j.id: j for j in studio.jobs.jobs()}
    if remembered in known:
        return remembered
    running = studio.jobs.running()
    if running:
        return running.id
    return max(known, default=None)


def classify_text(studio: Studio, adapter: str, text: str) -> dict[str, float]:
    if not adapter or adapter == NONE:
        raise AdapterError("Pick a classification adapter (train one, or upload one in the Library).")
    if not (text or "").strip():
        raise AdapterError("Type a sentence to classify.")
    return studio.classify(adapter, [text])[0].probabilities


def library_table(studio: Studio) -> pd.DataFrame:
    rows = []
    for e in studio.library.entries():
        cfg = e.meta.get("config", {})
        metrics = e.training.get("metrics") or {}
        rows.append(
            {
                "adapter": e.name,
                "task": e.task,
                "base": e.base,
                "bottleneck": e.meta.get("bottleneck"),
                "placement": cfg.get("placement"),
                "size (MB)": round(e.size_bytes / 1e6, 2),
                "status": e.training.get("status", "uploaded"),
                "accuracy": round(metrics["accuracy"], 4) if "accuracy" in metrics else None,
                "perplexity": round(metrics["perplexity"], 3) if "perplexity" in metrics else None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["adapter", "task", "base", "bottleneck", "placement", "size (MB)", "status", "accuracy", "perplexity"],
    )


def compare_table(studio: Studio, adapters: list[str]) -> pd.DataFrame:
    rows = []
    for name in adapters:
        e = studio.library.get(name)
        params = e.size_bytes // 4  # float32 tensors; the header is a rounding error
        metrics = e.training.get("metrics") or {}
        rows.append(
            {
                "adapter": name,
                "task": e.task,
                "bottleneck": e.meta.get("bottleneck"),
                "placement": e.meta.get("config", {}).get("placement"),
                "trainable params": params,
                "size (MB)": round(e.size_bytes / 1e6, 2),
                "training time (s)": e.training.get("train_seconds"),
                **{f"val {k}": round(v, 4) for k, v in metrics.items()},
            }
        )
    return pd.DataFrame(rows)


def check_compare_selection(adapters: list[str] | None, with_base: bool = False) -> list[str]:
    adapters = list(adapters or [])
    count = len(adapters) + (1 if with_base else 0)
    if not 2 <= count <= 5 or len(adapters) > 4:
        raise AdapterError(f"Select 2 to 4 adapters (and the base, if you like) to compare; you chose {count}.")
    return adapters


def compare_outputs(studio: Studio, adapters: list[str], text: str, with_base: bool) -> list[str]:
    """The same input through each adapter: a label with its confidence, or a generated answer.
    With `with_base`, the bare base of the instruction adapters answers too. Adapters that share a
    base run as one mixed batch (one row each), so comparing four costs about one pass, not four."""
    if not (text or "").strip():
        raise AdapterError("Type an input to run through the adapters.")
    entries = [studio.library.get(n) for n in adapters]
    chat_bases = {e.base for e in entries if e.task == "instruction"}
    if with_base and len(chat_bases) != 1:
        raise AdapterError("The bare base model can answer beside instruction adapters of one base; select those.")
    labelled = [n for n, e in zip(adapters, entries, strict=True) if e.task == "classification"]
    chatting: list[str | None] = [n for n, e in zip(adapters, entries, strict=True) if e.task == "instruction"]
    if with_base:
        chatting.append(None)
    out = {}
    for name, p in zip(labelled, studio.classify(labelled, [text] * len(labelled)), strict=True):
        top = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:3]
        out[name] = f"### {name}\n**{p.label}** ({p.confidence:.1%})  \n" + ", ".join(f"{k} {v:.1%}" for k, v in top)
    base_name = next(iter(chat_bases), "")
    answers = studio.answer(chatting, [text] * len(chatting), base_name, max_new_tokens=120)
    for name, answer in zip(chatting, answers, strict=True):
        out[name] = f"### {name if name else f'base: {base_name}'}\n{answer}"
    return [out[n] for n in [*adapters, *([None] if with_base else [])]]


def check_router(router: str | None) -> None:
    if not router:
        raise AdapterError("Pick a router: a classification adapter trained on departments.")


def route_table(studio: Studio, router: str | None, text: str) -> pd.DataFrame:
    """Route a batch of messages (one per line) and answer each with its department's adapter; the
    answers come from one mixed-adapter batch per base."""
    check_router(router)
    messages = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not messages:
        raise AdapterError("Type the customer messages, one per line.")
    if len(messages) > 32:
        raise AdapterError(f"Route at most 32 messages at a time; got {len(messages)}.")
    rows = [
        {"message": m, "department": p.label, "confidence": round(p.confidence, 3), "adapter": target, "answer": a}
        for m, (p, target, a) in zip(messages, studio.route_and_answer(router, messages), strict=True)
    ]
    return pd.DataFrame(rows)


def compare_curves(studio: Studio, adapters: list[str]):
    return charts.overlay({n: studio.library.get(n).curve() for n in adapters})


def compare_evaluate(studio: Studio, adapters: list[str], path: str | None) -> pd.DataFrame:
    if not path:
        raise AdapterError("Upload a labelled test file (the same columns as the training data).")
    return pd.DataFrame(studio.evaluate(adapters, path))


def _clock(seconds: float) -> str:
    return time.strftime("%M:%S", time.gmtime(max(0, seconds))) if seconds < 3600 else f"{seconds / 3600:.1f} h"
