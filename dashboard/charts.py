"""Plotly charts of the dashboard: probabilities, confusion matrix, curves, histograms.

Pure functions of arrays and ``core`` results, no Streamlit. Each model is drawn in its registry
colour (``core.models.REGISTRY``), so a model looks the same on every page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.models import REGISTRY
from core.ood import OOD_LABELS
from dashboard.images import click_targets

DIGITS = tuple(range(10))


def model_colour(variant: str) -> str | None:
    """The variant's colour from the registry (None lets Plotly choose)."""
    return REGISTRY[variant].colour if variant in REGISTRY else None


def probability_figure(
    probs: Mapping[str, np.ndarray], threshold: float, height: int = 320
) -> go.Figure:
    """Probabilities of all ten digits, one bar group per model, with the threshold line."""
    traces = [
        {
            "type": "bar",
            "name": variant,
            "x": list(DIGITS),
            "y": np.asarray(p),
            "marker": {"color": model_colour(variant)},
            "hovertemplate": f"{variant}: digit %{{x}}, %{{y:.1%}}<extra></extra>",
        }
        for variant, p in probs.items()
    ]
    line = {"color": "#dc2626", "dash": "dot"}
    layout = {
        "barmode": "group",
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "xaxis": {"tickmode": "array", "tickvals": list(DIGITS), "title": {"text": "digit"}},
        "yaxis": {"range": [0, 1.05], "tickformat": ".0%", "title": {"text": "probability"}},
        "legend": {"orientation": "h", "y": 1.12},
        "shapes": [
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold}
            | {"line": line}
        ],
        "annotations": [
            {
                "xref": "paper",
                "x": 0,
                "y": threshold,
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "text": f"threshold {threshold:.0%}",
                "font": {"color": "#dc2626", "size": 11},
            }
        ],
    }
    return go.Figure(data=traces, layout=layout)


def confusion_figure(matrix: np.ndarray, selected: tuple[int, int] | None = None) -> go.Figure:
    """Confusion matrix (rows: true digit, columns: predicted), log colour, counts as text.

    Every cell is clickable (see :func:`_click_targets`); ``selected`` is outlined in red.
    """
    matrix = np.asarray(matrix)
    true, pred = np.meshgrid(DIGITS, DIGITS, indexing="ij")
    fig = go.Figure(
        [
            go.Heatmap(
                z=np.log10(matrix + 1),
                x=list(DIGITS),
                y=list(DIGITS),
                text=matrix,
                texttemplate="%{text}",
                colorscale="Blues",
                showscale=False,
                hoverinfo="skip",
            ),
            click_targets(
                pred.ravel(),
                true.ravel(),
                38,
                matrix.ravel(),
                "true %{y} → predicted %{x}: %{customdata} images<extra></extra>",
            ),
        ]
    )
    if selected is not None:
        row, col = selected
        fig.add_shape(
            type="rect",
            x0=col - 0.5,
            x1=col + 0.5,
            y0=row - 0.5,
            y1=row + 0.5,
            line=dict(color="#dc2626", width=3),
        )
    fig.update_layout(
        height=520,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis=dict(
            title="predicted digit",
            tickmode="array",
            tickvals=list(DIGITS),
            side="top",
            range=[-0.5, 9.5],
            showgrid=False,
            zeroline=False,
        ),
        yaxis=dict(
            title="true digit",
            tickmode="array",
            tickvals=list(DIGITS),
            range=[9.5, -0.5],
            showgrid=False,
            zeroline=False,
        ),
    )
    return fig


def training_curves_figure(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> go.Figure:
    """Loss and accuracy per epoch (train dashed, validation solid) for every model."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for variant, history in histories.items():
        epochs = [row["epoch"] for row in history]
        colour = model_colour(variant)
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for split, dash in (("train", "dash"), ("val", "solid")):
                key = f"{split}_{metric}"
                fig.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=[row.get(key) for row in history],
                        name=f"{variant} {split}",
                        legendgroup=variant,
                        showlegend=col == 1,
                        line=dict(color=colour, dash=dash),
                        mode="lines+markers",
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".1%", row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def confidence_histogram(
    in_msp: np.ndarray, ood_msp: Mapping[str, np.ndarray], threshold: float
) -> go.Figure:
    """Max-probability histograms, MNIST test vs each OOD set, with the threshold marked."""
    fig = go.Figure()
    bins = dict(start=0.0, end=1.0001, size=0.02)
    fig.add_trace(
        go.Histogram(
            x=in_msp,
            name="MNIST test",
            histnorm="probability",
            xbins=bins,
            marker_color="#4f46e5",
            opacity=0.75,
        )
    )
    palette = ["#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b"]
    for colour, (name, scores) in zip(palette * 2, ood_msp.items(), strict=False):
        fig.add_trace(
            go.Histogram(
                x=scores,
                name=OOD_LABELS.get(name, name),
                histnorm="probability",
                xbins=bins,
                marker_color=colour,
                opacity=0.55,
            )
        )
    fig.add_vline(
        x=threshold,
        line_dash="dot",
        line_color="#dc2626",
        annotation_text=f"threshold {threshold:.2f}",
    )
    fig.update_layout(
        barmode="overlay",
        title="Maximum softmax probability",
        height=420,
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(title="max probability", range=[0, 1.01]),
        yaxis=dict(title="share of images", tickformat=".0%"),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def risk_coverage_figure(
    curve: Mapping[str, np.ndarray], threshold: float, point: tuple[float, float] | None
) -> go.Figure:
    """Accuracy of the accepted digits against the share accepted (``core.calibration``'s
    ``risk_coverage`` curve), with ``point`` = (coverage, accuracy) at ``threshold`` marked."""
    fig = go.Figure(
        go.Scatter(
            x=curve["coverage"],
            y=curve["accuracy"],
            mode="lines",
            line=dict(color="#4f46e5"),
            customdata=curve["threshold"],
            hovertemplate="coverage %{x:.1%}<br>accuracy %{y:.2%}<br>threshold %{customdata:.3f}"
            "<extra></extra>",
            name="risk-coverage",
        )
    )
    if point is not None:
        fig.add_trace(
            go.Scatter(
                x=[point[0]],
                y=[point[1]],
                mode="markers+text",
                marker=dict(color="#dc2626", size=12),
                text=[f"threshold {threshold:.2f}"],
                textposition="bottom left",
                name="current threshold",
                hovertemplate="coverage %{x:.1%}<br>accuracy %{y:.2%}<extra></extra>",
            )
        )
    low = float(np.nanmin(curve["accuracy"])) if len(curve["accuracy"]) else 0.0
    fig.update_layout(
        title="Risk-coverage: accuracy of the accepted digits",
        height=420,
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(title="coverage (share of test digits accepted)", tickformat=".0%"),
        yaxis=dict(title="accuracy of accepted", tickformat=".1%", range=[min(low, 0.99), 1.0005]),
        showlegend=False,
    )
    return fig


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
