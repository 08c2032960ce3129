"""Pictures and Plotly figures of the dashboard: pure functions of arrays, no Streamlit.

Digits are drawn with crisp (nearest-neighbour) pixels; attribution maps are overlaid with colour
scales whose low end is transparent, so the digit stays visible; a layer's feature maps are tiled
into one heatmap, which stays fast for 128 channels where one subplot per channel would not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from core.ood import OOD_LABELS

DIGITS = tuple(range(10))
PREVIEW_PIXELS = 112
MODEL_COLOURS = {"cnn1": "#60a5fa", "cnn2": "#f59e0b", "cnn3": "#4f46e5"}


def to_pixels(image: np.ndarray, size: int = PREVIEW_PIXELS) -> np.ndarray:
    """A [0, 1] grayscale or uint8 image scaled up with nearest neighbour (crisp pixels)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255).round().astype(np.uint8)
    picture = Image.fromarray(array)
    if picture.mode not in {"L", "RGB", "RGBA"}:
        picture = picture.convert("RGBA")
    scale = size / max(picture.size)
    new_size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return np.asarray(picture.resize(new_size, Image.Resampling.NEAREST))


def stage_preview(stage: np.ndarray, size: int = PREVIEW_PIXELS) -> np.ndarray:
    """A preprocessing stage for display, framed in grey so a white canvas shows its extent
    (transparent pixels are shown on white, as on the canvas)."""
    array = np.asarray(stage)
    if array.ndim == 3 and array.shape[2] == 4:
        rgba = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
        array = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    pixels = to_pixels(array, size).copy()
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        pixels[edge] = 160
    return pixels


@lru_cache(maxsize=8)
def _colour_table(colorscale: str) -> np.ndarray:
    colours = sample_colorscale(colorscale, np.linspace(0, 1, 256).tolist())
    return np.array([[int(c) for c in re.findall(r"[\d.]+", rgb)[:3]] for rgb in colours], np.uint8)


def overlay_pixels(
    image: np.ndarray, heat: np.ndarray, size: int = PREVIEW_PIXELS, alpha: float = 0.55
) -> np.ndarray:
    """RGB picture of ``heat`` (non-negative part, scaled to its max) blended over a digit."""
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0, None)
    peak = float(heat.max())
    scaled = heat / peak if peak > 0 else heat
    colour = _colour_table("Inferno")[(scaled * 255).astype(np.uint8)].astype(np.float32)
    gray = np.repeat(np.clip(image, 0, 1)[..., None] * 255.0, 3, axis=2)
    weight = alpha * scaled[..., None]
    blended = (1 - weight) * gray + weight * colour
    return to_pixels(blended.round().astype(np.uint8), size)


def _square_layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    """Layout of an image-like figure: square pixels, row 0 on top, no axes.

    Figures here are built in one ``go.Figure(data, layout)`` call: the ``update_*`` and
    ``add_hline`` helpers validate again on every call and cost several milliseconds each, which
    matters on the Draw page's every-stroke rerun.
    """
    return {
        "title": {"text": title},
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 30, "b": 0},
        "xaxis": {"visible": False, "constrain": "domain"},
        "yaxis": {
            "visible": False,
            "autorange": "reversed",
            "scaleanchor": "x",
            "constrain": "domain",
        },
        **extra,
    }


def _gray_trace(image: np.ndarray, **extra) -> dict:
    """A [0, 1] grey image as a heatmap trace (black 0, white 1, no colour bar)."""
    return {
        "type": "heatmap",
        "z": np.asarray(image),
        "colorscale": "gray",
        "zmin": 0,
        "zmax": 1,
        "showscale": False,
        **extra,
    }


def digit_figure(image: np.ndarray, title: str = "", height: int = 300) -> go.Figure:
    """The 28×28 image a model sees, with pixel values on hover."""
    trace = _gray_trace(image, hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>")
    return go.Figure(data=[trace], layout=_square_layout(title, height))


def heatmap_figure(values: np.ndarray, title: str = "", height: int = 300) -> go.Figure:
    """One 2-D array (a feature map) as a Viridis heatmap with values on hover."""
    trace = {
        "type": "heatmap",
        "z": np.asarray(values),
        "colorscale": "Viridis",
        "colorbar": {"thickness": 10},
        "hovertemplate": "x %{x}, y %{y}: %{z:.3f}<extra></extra>",
    }
    return go.Figure(data=[trace], layout=_square_layout(title, height))


def overlay_figure(
    image: np.ndarray, heat: np.ndarray, title: str = "", height: int = 300, signed: bool = False
) -> go.Figure:
    """An attribution map over the digit: a colour scale whose low end is transparent.

    Signed maps (Integrated Gradients, Occlusion) use a diverging scale centred on zero: red
    supports the target class, blue speaks against it.
    """
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    peak = float(np.abs(heat).max()) or 1.0
    if signed:
        colorscale = [
            [0.0, "rgba(37, 99, 235, 0.9)"],
            [0.5, "rgba(255, 255, 255, 0)"],
            [1.0, "rgba(220, 38, 38, 0.9)"],
        ]
        zmin, zmax = -peak, peak
    else:
        colorscale = [
            [0.0, "rgba(252, 211, 77, 0)"],
            [0.5, "rgba(251, 146, 60, 0.3)"],
            [1.0, "rgba(220, 38, 38, 0.9)"],
        ]
        zmin, zmax = 0.0, peak
    traces = [
        _gray_trace(image, hoverinfo="skip"),
        {
            "type": "heatmap",
            "z": heat,
            "colorscale": colorscale,
            "zmin": zmin,
            "zmax": zmax,
            "colorbar": {"thickness": 10, "len": 0.8},
            "hovertemplate": "x %{x}, y %{y}: %{z:.3g}<extra></extra>",
        },
    ]
    return go.Figure(data=traces, layout=_square_layout(title, height))


def grid_columns(channels: int) -> int:
    """Tiles per row: a power of two giving a mosaic about twice as wide as high, at most 16
    (so 32, 64 and 128 channels fill complete rows)."""
    return max(1, min(16, channels, 2 ** math.ceil(math.log2(math.sqrt(2 * channels)))))


def feature_map_grid(
    values: np.ndarray, columns: int | None = None, width_px: int = 760
) -> tuple[go.Figure, int]:
    """All ``[C, H, W]`` feature maps of a layer as one tiled heatmap (fast for 128 maps).

    Tiles share one colour scale, so weak channels look weak; hover names the channel. The
    figure's height follows the mosaic's aspect ratio at about ``width_px`` wide. Returns the
    figure and the number of columns used (to map a clicked pixel back to its channel).
    """
    channels, height, width = values.shape
    columns = max(1, min(columns or grid_columns(channels), channels))
    rows = -(-channels // columns)
    mosaic = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan, np.float32)
    for c in range(channels):
        r, k = divmod(c, columns)
        top, left = r * (height + 1), k * (width + 1)
        mosaic[top : top + height, left : left + width] = values[c]
    aspect = mosaic.shape[0] / mosaic.shape[1]
    centres = np.arange(channels)
    rows_of, cols_of = np.divmod(centres, columns)
    tile_px = 0.9 * width * (width_px - 80) / mosaic.shape[1]
    fig = go.Figure(
        [
            go.Heatmap(
                z=mosaic,
                colorscale="Viridis",
                zmin=float(np.min(values)),
                zmax=float(np.max(values))
                if np.max(values) > np.min(values)
                else float(np.min(values)) + 1,
                colorbar=dict(thickness=10),
                hoverinfo="skip",
            ),
            _click_targets(
                cols_of * (width + 1) + width // 2,
                rows_of * (height + 1) + height // 2,
                tile_px,
                np.stack([centres, values.reshape(channels, -1).max(axis=1)], axis=1),
                "channel %{customdata[0]} (max %{customdata[1]:.2f}): click to enlarge"
                "<extra></extra>",
            ),
        ]
    )
    layout = _square_layout("", int(np.clip(width_px * aspect + 40, 140, 900)))
    layout["xaxis"]["range"] = [-0.5, mosaic.shape[1] - 0.5]
    layout["yaxis"].update(range=[mosaic.shape[0] - 0.5, -0.5], autorange=False)
    layout["plot_bgcolor"] = "rgba(0,0,0,0)"
    fig.update_layout(layout)
    return fig, columns


def channel_at(point: Mapping[str, Any], shape: tuple[int, ...], columns: int) -> int | None:
    """The channel under a clicked mosaic pixel (see :func:`feature_map_grid`), or None."""
    channels, height, width = shape
    try:
        x, y = int(point["x"]), int(point["y"])
    except (KeyError, TypeError, ValueError):
        return None
    if x % (width + 1) == width or y % (height + 1) == height:
        return None
    channel = (y // (height + 1)) * columns + x // (width + 1)
    return channel if 0 <= channel < channels else None


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
            "marker": {"color": MODEL_COLOURS.get(variant)},
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


def _click_targets(
    x: np.ndarray, y: np.ndarray, size: float, customdata: np.ndarray, hovertemplate: str
) -> go.Scatter:
    """Near-invisible square markers over heatmap cells, so a click selects a cell.

    Plotly cannot select heatmap cells; Streamlit's ``on_select`` needs selectable points. Fully
    transparent markers are ignored by clicks, hence the 1% alpha.
    """
    return go.Scatter(
        x=x,
        y=y,
        mode="markers",
        marker=dict(symbol="square", size=size, color="rgba(0, 0, 0, 0.01)", line=dict(width=0)),
        customdata=customdata,
        hovertemplate=hovertemplate,
        showlegend=False,
    )


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
            _click_targets(
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
        colour = MODEL_COLOURS.get(variant)
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
