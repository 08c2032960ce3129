"""Plotly charts of the dashboard: probabilities, confusion matrix, curves, histograms.

Pure functions of arrays and ``core`` results, no Streamlit. Each model is drawn in its registry
colour (``core.models.REGISTRY``), so a model looks the same on every page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    probs: Mapping[str, np.ndarray], threshold: float | None = None, height: int = 320
) -> go.Figure:
    """Probabilities of all ten digits, one bar group per model (with a threshold line when
    ``threshold`` is given: one model's rejection threshold)."""
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
        "legend": {"orientation": "h", "y": -0.3, "x": 0},
    }
    if threshold is not None:
        layout["shapes"] = [
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold}
            | {"line": line}
        ]
        layout["annotations"] = [
            {
                "xref": "paper",
                "x": 0,
                "y": threshold,
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "text": f"threshold {threshold:.1%}",
                "font": {"color": "#dc2626", "size": 11},
            }
        ]
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


NINES_MAX = 6.0


def nines(confidence: np.ndarray | float) -> np.ndarray:
    """``-log10(1 - p)``, clipped to [0, 6]: 1 at 90%, 2 at 99%, 3 at 99.9%. Calibrated
    confidences crowd into the top percent, where this scale spreads them out."""
    p = np.clip(np.asarray(confidence, np.float64), 0.0, 1.0)
    return np.clip(-np.log10(np.maximum(1.0 - p, 10**-NINES_MAX)), 0.0, NINES_MAX)


def confidence_histogram(
    in_msp: np.ndarray, ood_msp: Mapping[str, np.ndarray], threshold: float
) -> go.Figure:
    """Calibrated-confidence histograms, MNIST test vs each OOD set, threshold marked, on a
    "nines" axis (90%, 99%, 99.9%, ...)."""
    fig = go.Figure()
    bins = dict(start=0.0, end=NINES_MAX + 0.001, size=0.1)
    fig.add_trace(
        go.Histogram(
            x=nines(in_msp),
            name="MNIST test",
            histnorm="probability",
            xbins=bins,
            marker_color="#4f46e5",
            opacity=0.75,
        )
    )
    palette = ["#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b", "#0ea5e9", "#db2777"]
    for colour, (name, scores) in zip(palette * 2, ood_msp.items(), strict=False):
        fig.add_trace(
            go.Histogram(
                x=nines(scores),
                name=OOD_LABELS.get(name, name),
                histnorm="probability",
                xbins=bins,
                marker_color=colour,
                opacity=0.55,
            )
        )
    if threshold > 0:
        fig.add_vline(
            x=float(nines(threshold)),
            line_dash="dot",
            line_color="#dc2626",
            annotation_text=f"threshold {100 * threshold:.3g}%",
        )
    ticks = list(range(int(NINES_MAX) + 1))
    fig.update_layout(
        barmode="overlay",
        title="Calibrated confidence (top probability)",
        height=420,
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(
            title="confidence",
            range=[0, NINES_MAX + 0.05],
            tickvals=ticks,
            ticktext=["0%", *(f"{100 - 10 ** (2 - k):.{max(0, k - 2)}f}%" for k in ticks[1:])],
        ),
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
