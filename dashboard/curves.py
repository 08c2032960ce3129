"""Plotly line charts of explanations and calibration: the sanity cascade, faithfulness curves,
reliability diagrams. Pure functions of ``core`` results, no Streamlit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def sanity_figure(steps: Sequence[Any]) -> go.Figure:
    """Spearman correlation with the trained map after each cascading randomisation step."""
    fig = go.Figure(
        go.Scatter(
            x=[step.layer if step.layer != "original" else "trained" for step in steps],
            y=[step.spearman for step in steps],
            mode="lines+markers",
            line=dict(color="#4f46e5"),
            hovertemplate="%{x}: ρ = %{y:.3f}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_color="#9ca3af")
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
        title="Rank correlation with the trained model's map",
        xaxis=dict(title="randomised down to layer"),
        yaxis=dict(title="Spearman ρ", range=[-1.05, 1.05]),
    )
    return fig


def reliability_figure(
    before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray]
) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin before and after temperature scaling."""
    edges = np.asarray(before["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line=dict(color="#9ca3af", dash="dot"),
            name="perfectly calibrated",
            hoverinfo="skip",
        )
    )
    for label, bins, colour in (
        ("before (softmax)", before, "#f59e0b"),
        ("after temperature scaling", after, "#4f46e5"),
    ):
        count = np.asarray(bins["count"])
        keep = count > 0
        fig.add_trace(
            go.Scatter(
                x=np.asarray(bins["confidence"])[keep],
                y=np.asarray(bins["accuracy"])[keep],
                customdata=np.stack([centres[keep], count[keep]], axis=1),
                mode="lines+markers",
                marker=dict(size=np.clip(np.sqrt(count[keep]) / 4, 5, 18), color=colour),
                line=dict(color=colour),
                name=label,
                hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>"
                "%{customdata[1]:.0f} images<extra></extra>",
            )
        )
    fig.update_layout(
        title="Reliability: accuracy against confidence (marker size: images per bin)",
        height=420,
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(title="mean confidence in bin", range=[0, 1.02]),
        yaxis=dict(title="accuracy in bin", range=[0, 1.02]),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def faithfulness_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> go.Figure:
    """Deletion and insertion curves (probability of the target as pixels are removed / added
    most-relevant-first) of each map, side by side; baselines dashed."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("deletion (lower area = more faithful)", "insertion (higher = better)"),
    )
    palette = ["#4f46e5", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#db2777",
               "#84cc16", "#f97316", "#14b8a6"]  # fmt: skip
    for colour, (name, (deletion, insertion)) in zip(palette * 2, curves.items(), strict=False):
        baseline = name in ("Random map", "Edge map (Sobel)")
        style = {"color": "#9ca3af" if baseline else colour, "dash": "dash" if baseline else None}
        for col, curve in ((1, deletion), (2, insertion)):
            fig.add_trace(
                go.Scatter(
                    x=np.linspace(0, 1, len(curve)),
                    y=curve,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line=style,
                    hovertemplate=f"{name}: %{{x:.0%}} of pixels, p = %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="share of pixels", tickformat=".0%")
    fig.update_yaxes(title_text="probability of the target", range=[0, 1.02], col=1)
    fig.update_yaxes(range=[0, 1.02], col=2)
    fig.update_layout(
        height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(y=-0.35, orientation="h")
    )
    return fig


def robustness_figure(table: Mapping[str, Any], colours: Mapping[str, str | None]) -> go.Figure:
    """Accuracy of every model on shifted and rotated test digits (``core.robustness``)."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("digits shifted (pixels)", "digits rotated (degrees)")
    )
    for variant, curve in table["models"].items():
        for col, key, xs in ((1, "shift", table["shifts"]), (2, "rotation", table["rotations"])):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[curve[key][str(x)] for x in xs],
                    mode="lines+markers",
                    name=variant,
                    legendgroup=variant,
                    showlegend=col == 1,
                    line={"color": colours.get(variant)},
                    hovertemplate=f"{variant}: %{{x}} → %{{y:.2%}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(title_text="test accuracy", tickformat=".0%", col=1)
    fig.update_yaxes(tickformat=".0%", col=2)
    fig.update_layout(
        height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2)
    )
    return fig
