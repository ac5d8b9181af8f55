"""Plotly figures for the studio: live training curves, overlaid curves, class probabilities."""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go

_LAYOUT = dict(
    template="plotly_white", height=340, margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2)
)


def training_curve(events: list[dict[str, Any]], title: str = "Training") -> go.Figure:
    """Training loss per step, validation loss, and accuracy (right axis) when there is one. Before
    the first step the chart says which phase the run is in (loading, tokenising)."""
    steps = [e for e in events if e.get("kind") == "step"]
    evals = [e for e in events if e.get("kind") == "eval"]
    total = max([e.get("total_steps") or 0 for e in events] + [len(steps), 1])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[e["step"] for e in steps],
            y=[e["loss"] for e in steps],
            name="train loss",
            mode="lines+markers" if len(steps) < 40 else "lines",  # a lone first point must show
            line=dict(width=1.5),
            marker=dict(size=5),
        )
    )
    if evals:
        fig.add_trace(
            go.Scatter(
                x=[e["step"] for e in evals],
                y=[e["metrics"]["val_loss"] for e in evals],
                name="validation loss",
                mode="lines+markers",
            )
        )
        if "accuracy" in evals[0]["metrics"]:
            fig.add_trace(
                go.Scatter(
                    x=[e["step"] for e in evals],
                    y=[e["metrics"]["accuracy"] for e in evals],
                    name="validation accuracy",
                    mode="lines+markers",
                    yaxis="y2",
                )
            )
    if not steps:
        fig.add_annotation(text=html.escape(phase(events)), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(
        title=html.escape(title),  # plotly renders a subset of HTML, links included
        xaxis=dict(title="step", range=[0, total * 1.02], tick0=0, dtick=max(1, math.ceil(total / 10)), tickformat="d"),
        yaxis=dict(title="loss", rangemode="tozero"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1], showgrid=False),
        uirevision=title,  # legend clicks and zoom survive the live redraws
        **_LAYOUT,
    )
    return fig


def phase(events: list[dict[str, Any]]) -> str:
    """What a run is doing before its first step, in words."""
    latest = next((e for e in reversed(events) if e.get("kind") in ("status", "data")), None)
    if latest is None:
        return "Waiting in the queue…"
    if latest["kind"] == "data":
        return "Data read and tokenised; building the adapter…"
    return latest.get("message") or f"{latest.get('status', 'working')}…"


def overlay(curves: dict[str, list[dict[str, Any]]]) -> go.Figure:
    fig = go.Figure()
    for name, events in curves.items():
        steps = [e for e in events if e.get("kind") == "step"]
        fig.add_trace(
            go.Scatter(x=[e["step"] for e in steps], y=[e["loss"] for e in steps], name=html.escape(name), mode="lines")
        )
    if not any(trace.x for trace in fig.data):
        fig.add_annotation(
            text="No training curve: these adapters were uploaded or trained elsewhere.",
            showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
        )  # fmt: skip
    fig.update_layout(
        title="Training loss",
        xaxis=dict(title="step", rangemode="nonnegative"),
        yaxis=dict(title="loss", rangemode="tozero"),
        **_LAYOUT,
    )
    return fig


def label_counts(counts: dict[str, int]) -> go.Figure:
    """Rows per label, largest first: an unbalanced file shows at a glance."""
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    fig = go.Figure(go.Bar(x=[html.escape(k) for k, _ in ordered], y=[v for _, v in ordered]))
    fig.update_layout(title="Rows per label", xaxis_title="label", yaxis_title="rows", **{**_LAYOUT, "height": 280})
    return fig


def token_lengths(lengths: list[int], max_length: int) -> go.Figure:
    """How long the examples are in tokens, with the max-length line past which they are cut."""
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=40, name="examples"))
    fig.add_vline(x=max_length, line_dash="dash", line_color="crimson", annotation_text=f"max length {max_length}")
    cut = sum(n > max_length for n in lengths)
    fig.update_layout(
        title=f"Tokens per example ({cut} of {len(lengths)} longer than max length)",
        xaxis_title="tokens",
        yaxis_title="examples",
        **{**_LAYOUT, "height": 280},
    )
    return fig
