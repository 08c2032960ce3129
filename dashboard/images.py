"""Pictures of digits and maps: pure functions of arrays, no Streamlit.

Digits are drawn with crisp (nearest-neighbour) pixels; attribution maps are overlaid with colour
scales whose low end is transparent, so the digit stays visible; a layer's feature maps are tiled
into one heatmap, which stays fast for 128 channels where one subplot per channel would not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale

PREVIEW_PIXELS = 112


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


def signed_overlay_pixels(
    image: np.ndarray, heat: np.ndarray, size: int = PREVIEW_PIXELS, alpha: float = 0.75
) -> np.ndarray:
    """RGB picture of a map on a symmetric scale over a faint digit: red for, blue against.

    The map is divided by its largest magnitude, so every map of a grid shares the scale
    [-1, 1] (white = 0); a non-negative map only ever shows red.
    """
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    peak = float(np.abs(heat).max())
    scaled = heat / peak if peak > 0 else heat
    red = np.array([220, 38, 38], np.float32)
    blue = np.array([37, 99, 235], np.float32)
    colour = np.where(scaled[..., None] >= 0, red, blue)
    gray = 255.0 - np.repeat(np.clip(image, 0, 1)[..., None] * 90.0, 3, axis=2)
    weight = alpha * np.abs(scaled)[..., None]
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
            click_targets(
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


def click_targets(
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
