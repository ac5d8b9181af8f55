"""Plotly figures for the studio: live training curves, overlaid curves, class probabilities."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

_LAYOUT = dict(
    template="plotly_white", height=340, margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2)
)


def training_curve(events: list[dict[str, Any]], title: str = "Training") -> go.Figure:
    """Training loss per step, validation loss, and accuracy (right axis) when there is one."""
    steps = [e for e in events if e.get("kind") == "step"]
    evals = [e for e in events if e.get("kind") == "eval"]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[e["step"] for e in steps],
            y=[e["loss"] for e in steps],
            name="train loss",
            mode="lines",
            line=dict(width=1.5),
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
    fig.update_layout(
        title=html.escape(title),  # plotly renders a subset of HTML, links included
        xaxis_title="step",
        yaxis_title="loss",
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1], showgrid=False),
        **_LAYOUT,
    )
    return fig


def overlay(curves: dict[str, list[dict[str, Any]]]) -> go.Figure:
    fig = go.Figure()
    for name, events in curves.items():
        steps = [e for e in events if e.get("kind") == "step"]
        fig.add_trace(
            go.Scatter(x=[e["step"] for e in steps], y=[e["loss"] for e in steps], name=html.escape(name), mode="lines")
        )
    fig.update_layout(title="Training loss", xaxis_title="step", yaxis_title="loss", **_LAYOUT)
    return fig
