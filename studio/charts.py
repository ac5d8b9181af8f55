"""Plotly figures for the studio: live training curves, overlaid curves, class probabilities, confusion
matrices and the accuracy-against-size trade-off."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative

_LAYOUT = dict(
    template="plotly_white", height=340, margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2)
)


# One colour per adapter on every chart: Plotly's own ten first, then more, so ten adapters look as usual.
PALETTE = [*qualitative.Plotly, *qualitative.Dark24]


def colour_map(names: Iterable[str]) -> dict[str, str]:
    """One colour per name, by its place among the sorted names: charts given the same names (a visitor's
    adapters and runs) colour each one alike, whatever each chart shows of them and in what order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


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


def overlay(curves: dict[str, list[dict[str, Any]]], colours: dict[str, str] | None = None) -> go.Figure:
    """Training loss per step of each named run or adapter, in its colour from `colours` (`colour_map`)."""
    fig = go.Figure()
    for name, events in curves.items():
        steps = [e for e in events if e.get("kind") == "step"]
        fig.add_trace(
            go.Scatter(
                x=[e["step"] for e in steps],
                y=[e["loss"] for e in steps],
                name=html.escape(name),
                mode="lines",
                line=dict(color=(colours or {}).get(name)),
            )
        )
    if not any(trace.x for trace in fig.data):
        empty = "No training curve: these adapters were uploaded or trained elsewhere."
        fig.add_annotation(
            text=empty if curves else "Pick two or more above to see their training curves here.",
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


def confusion(
    matrix: list[list[int]], labels: list[str], order: list[int] | None = None, title: str = "Confusion matrix"
):
    """Rows are the true labels, columns the predicted ones, both in `order` (the engine's, which puts
    the biggest confusions first). Colour is the share of the true label's rows, so a rare label's
    mistakes show as clearly as a common one's; each cell is labelled with its count."""
    order = list(order) if order else list(range(len(labels)))
    counts = [[matrix[i][j] for j in order] for i in order]
    names = [_short(labels[i]) for i in order]
    shares = [[c / max(sum(row), 1) for c in row] for row in counts]
    n = len(order)
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=names,
            y=names,
            text=counts,
            texttemplate="%{text}" if n <= 30 else None,  # past 30 classes the counts are on hover only
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title="share of<br>true label", tickformat=".0%"),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} rows (%{z:.0%} of the label)<extra></extra>",
        )
    )
    size = max(340, min(1400, 26 * n + 160))
    fig.update_layout(
        title=html.escape(title),
        xaxis=dict(title="predicted", tickangle=-45 if n > 6 else 0, type="category", automargin=True),
        yaxis=dict(title="true", autorange="reversed", type="category", automargin=True),
        template="plotly_white",
        height=size,
        margin=dict(l=60, r=20, t=50, b=60),
    )
    return fig


def _short(label: str, limit: int = 28) -> str:
    label = str(label)
    return html.escape(label if len(label) <= limit else label[: limit - 1] + "…")


MODE_NAMES = {"adapter": "adapter", "head": "head only", "full": "full fine-tuning", None: "uploaded"}
MODE_SYMBOLS = {"adapter": "circle", "head": "square", "full": "diamond", None: "triangle-up"}


def tradeoff(points: list[dict[str, Any]]) -> go.Figure:
    """Validation accuracy against trainable parameters (log x), one point per run or adapter, in its
    colour, its shape by mode, the marker sized by training time: Houlsby's trade-off on this data.
    `points`: name, mode, trainable, accuracy, seconds (None when unknown), colour (optional)."""
    fig = go.Figure()
    longest = max([p["seconds"] or 0 for p in points] + [1])
    span = _log_span([p["trainable"] for p in points])
    for mode, label in MODE_NAMES.items():
        group = [p for p in points if p.get("mode") == mode]
        if not group:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p["trainable"] for p in group],
                y=[p["accuracy"] for p in group],
                mode="markers+text" if len(points) <= 12 else "markers",
                text=[_short(p["name"], 20) for p in group],
                textposition=[_text_side(p["trainable"], span) for p in group],
                customdata=[[_short(p["name"], 60), _time(p["seconds"])] for p in group],
                marker=dict(
                    size=[10 + 20 * ((p["seconds"] or 0) / longest) ** 0.5 for p in group],
                    color=[p.get("colour") for p in group] if all(p.get("colour") for p in group) else None,
                    symbol=MODE_SYMBOLS[mode],
                    opacity=0.8,
                ),
                name=label,
                legendgroup=label,
                showlegend=False,  # the legend's own marker below: the points' colours are their adapters'
                hovertemplate="%{customdata[0]}<br>%{x:,} trainable parameters<br>accuracy %{y:.3f}"
                "<br>trained in %{customdata[1]}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=label, legendgroup=label,
                marker=dict(size=10, color="#888", symbol=MODE_SYMBOLS[mode]),
            )
        )  # fmt: skip
    if not points:
        fig.add_annotation(
            text="No finished classification runs yet.", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    fig.update_layout(
        title="Accuracy against trainable parameters (marker size: training time)",
        xaxis=dict(title="trainable parameters (log scale)", type="log", range=span),
        yaxis=dict(title="validation accuracy", range=[0, 1.2], tickvals=[0, 0.25, 0.5, 0.75, 1]),  # room for names
        **{**_LAYOUT, "legend": dict(orientation="h", y=-0.3), "margin": dict(l=50, r=20, t=40, b=60)},
    )
    return fig


def _log_span(xs: list[float]) -> list[float] | None:
    """The x range (in decades) with room on both sides for the biggest marker; None: plotly's own."""
    logs = [math.log10(x) for x in xs if x and x > 0]
    if not logs:
        return None
    pad = max(0.3, 0.08 * (max(logs) - min(logs)))
    return [min(logs) - pad, max(logs) + pad]


def _text_side(x: float, span: list[float] | None) -> str:
    """Where a point's name goes so that it stays inside the plot: a name centred on a point near an
    edge would run past it (and plotly cuts it there), so near the left edge it reads rightwards from
    the point, near the right edge leftwards. A name of 20 characters is under a third of the plot's
    width at 1,280 px."""
    if not span or not x or x <= 0 or span[1] - span[0] <= 0:
        return "top center"
    place = (math.log10(x) - span[0]) / (span[1] - span[0])
    return "top right" if place < 1 / 3 else "top left" if place > 2 / 3 else "top center"


def accuracy_time(points: list[dict[str, Any]]) -> go.Figure:
    """Validation accuracy against training time, the same points as `tradeoff`."""
    timed = [p for p in points if p.get("seconds")]
    fig = go.Figure(
        go.Scatter(
            x=[p["seconds"] for p in timed],
            y=[p["accuracy"] for p in timed],
            mode="markers",
            text=[_short(p["name"], 60) for p in timed],
            marker=dict(
                size=9, color=[p.get("colour") for p in timed] if all(p.get("colour") for p in timed) else None
            ),
            hovertemplate="%{text}<br>%{x:.0f} s<br>accuracy %{y:.3f}<extra></extra>",
            name="runs",
        )
    )
    fig.update_layout(
        title="Accuracy against training time",
        xaxis=dict(title="training time (s)", rangemode="tozero"),
        yaxis=dict(title="validation accuracy", rangemode="tozero"),
        **{**_LAYOUT, "showlegend": False},
    )
    return fig


def _time(seconds: float | None) -> str:
    if not seconds:
        return "unknown time"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
