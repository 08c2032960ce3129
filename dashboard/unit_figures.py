"""Pictures and Plotly figures of the unit view: kernels, marked top digits, maps, selectivity.

Pure functions of ``core.units`` results, no Streamlit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core import units
from dashboard import images

KERNEL_SLICES = 16


def marked_digit(image: np.ndarray, box: tuple[int, ...], scale: int = 4) -> np.ndarray:
    """An RGB picture of a uint8 digit, ``scale`` × enlarged (at least 2), ``box`` (inclusive)
    outlined in red, 2 pixels wide."""
    pixels = np.repeat(np.repeat(np.asarray(image, np.uint8), scale, 0), scale, 1)
    rgb = np.repeat(pixels[..., None], 3, axis=2)
    top, left, bottom, right = (v * scale for v in box)
    bottom, right = bottom + scale - 1, right + scale - 1
    red = np.array([239, 68, 68], np.uint8)
    rgb[top : bottom + 1, [left, left + 1, right - 1, right]] = red
    rgb[[top, top + 1, bottom - 1, bottom], left : right + 1] = red
    return rgb


def kernel_figure(weights: units.UnitWeights, count: int = KERNEL_SLICES) -> go.Figure:
    """The unit's kernel slices, largest L2 norm first, tiled on one symmetric colour scale."""
    order = weights.order[:count]
    slices = weights.kernel[order]
    n, k, _ = slices.shape
    columns = min(n, 8)
    rows = -(-n // columns)
    mosaic = np.full((rows * (k + 1) - 1, columns * (k + 1) - 1), np.nan)
    labels = np.full(mosaic.shape, "", dtype=object)
    for i, channel in enumerate(order):
        r, c = divmod(i, columns)
        top, left = r * (k + 1), c * (k + 1)
        mosaic[top : top + k, left : left + k] = slices[i]
        labels[top : top + k, left : left + k] = (
            f"input channel {channel} (‖w‖ {weights.norms[channel]:.3f})"
        )
    peak = float(np.nanmax(np.abs(mosaic))) or 1.0
    trace = go.Heatmap(
        z=mosaic,
        text=labels.tolist(),
        zmin=-peak,
        zmax=peak,
        colorscale="RdBu",
        reversescale=True,
        colorbar={"thickness": 10},
        hovertemplate="%{text}<br>weight %{z:.4f}<extra></extra>",
    )
    height = int(np.clip(28 * mosaic.shape[0] + 20, 140, 420))
    return go.Figure([trace], _image_layout(height))


def cell_map_figure(
    values: np.ndarray, cell: tuple[int, int], title: str = "", clickable: bool = True
) -> go.Figure:
    """A unit's map with ``cell`` outlined in red; ``clickable`` puts a click target on every
    cell (built in one ``go.Figure`` call: the ``update_*`` helpers re-validate, see
    ``dashboard.images``). The axes span exactly the map: the click targets' marker size would
    otherwise pad the autorange, leaving a margin around the map and cells off its grid."""
    traces: list = [
        {
            "type": "heatmap",
            "z": values,
            "colorscale": "Viridis",
            "colorbar": {"thickness": 10},
            "hovertemplate": "row %{y}, col %{x}: %{z:.3f}<extra></extra>",
        }
    ]
    height, width = values.shape
    if clickable:
        ys, xs = np.divmod(np.arange(height * width), width)
        traces.append(
            images.click_targets(
                xs,
                ys,
                240 / max(height, width),
                np.stack([ys, xs, values.ravel()], axis=1),
                "row %{customdata[0]}, col %{customdata[1]}: %{customdata[2]:.3f}<extra></extra>",
            )
        )
    row, col = cell
    outline = {"type": "rect", "x0": col - 0.5, "x1": col + 0.5, "y0": row - 0.5, "y1": row + 0.5}
    layout = _image_layout(300, title)
    layout["xaxis"]["range"] = [-0.5, width - 0.5]
    layout["yaxis"] |= {"range": [height - 0.5, -0.5], "autorange": False}
    layout["shapes"] = [outline | {"line": {"color": "#ef4444", "width": 2}}]
    return go.Figure(data=traces, layout=layout)


def _image_layout(height: int, title: str = "") -> dict:
    """Square cells, row 0 on top, no axes."""
    hidden = {"visible": False, "constrain": "domain"}
    return {
        "title": {"text": title},
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 30 if title else 10, "b": 0},
        "xaxis": hidden,
        "yaxis": hidden | {"autorange": "reversed", "scaleanchor": "x"},
    }


def class_mean_figure(means: np.ndarray) -> go.Figure:
    """Mean activation of the unit on test digits of each class: what it is selective for."""
    trace = go.Bar(
        x=list(range(10)),
        y=means,
        marker={"color": "#4f46e5"},
        hovertemplate="digit %{x}: mean %{y:.3f}<extra></extra>",
    )
    layout = {
        "height": 240,
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {"tickmode": "linear", "title": {"text": "true digit"}},
        "yaxis": {"title": {"text": "mean activation"}},
    }
    return go.Figure([trace], layout)


def _labels(name: str, centre: int, read: np.ndarray) -> list[str]:
    """``row 4``, …; a position outside the map reads the edge (replicate padding):
    ``row -1→0``."""
    wanted = centre - len(read) // 2 + np.arange(len(read))
    return [
        f"{name} {w}" if w == r else f"{name} {w}→{r}"
        for w, r in zip(wanted.tolist(), read.tolist(), strict=True)
    ]


def grid_table(values: np.ndarray, cell: units.Cell) -> pd.DataFrame:
    """A patch-sized grid of numbers labelled with the input rows and columns it was read from."""
    rows, cols = _labels("row", cell.row, cell.rows), _labels("col", cell.col, cell.cols)
    frame = pd.DataFrame(np.round(values, 3), columns=cols)
    frame.insert(0, "", rows)
    return frame


def layer_table(rows: list[units.LayerRow]) -> pd.DataFrame:
    """The layer summary: output shape, parameters, receptive field and jump in input pixels."""
    return pd.DataFrame(
        {
            "layer": [r.name for r in rows],
            "type": [r.kind for r in rows],
            "output shape": ["×".join(map(str, r.output_shape)) for r in rows],
            "parameters": [r.params for r in rows],
            "receptive field": [
                f"{r.receptive_field}×{r.receptive_field} px"
                if r.receptive_field
                else "whole image"
                for r in rows
            ],
            "cell spacing (px)": [r.jump for r in rows],
        }
    )


def contribution_table(result: units.CellArithmetic, count: int = 8) -> tuple[pd.DataFrame, list]:
    """The input channels contributing most to the conv sum (and the rest, summed), and their
    indices, largest magnitude first."""
    contributions = result.contributions
    top = np.argsort(-np.abs(contributions), kind="stable")[:count]
    rows = [(f"input channel {i}", contributions[i]) for i in top]
    rest = contributions.sum() - contributions[top].sum()
    rows.append((f"the other {len(contributions) - len(top)} channels", rest))
    rows.append(("conv sum", result.cell.conv))
    return pd.DataFrame(rows, columns=["", "Σ patch · kernel"]), [int(i) for i in top]


def cell_grids(result: units.CellArithmetic, channel: int) -> list[tuple[str, pd.DataFrame]]:
    """Input patch, kernel slice and their product for one input channel, labelled by the input
    rows and columns the patch was read from."""
    cell, kernel = result.cell, result.weights.kernel[channel]
    patch = cell.patch[channel]
    grids = (("input patch", patch), ("kernel", kernel), ("patch × kernel", patch * kernel))
    return [(title, grid_table(grid, cell)) for title, grid in grids]


def _signed(value: float) -> str:
    """``+ 0.5`` or ``− 0.5``: a term of a sum as written by hand."""
    return f"+ {value:.6f}" if value >= 0 else f"− {-value:.6f}"


def arithmetic_lines(result: units.CellArithmetic, model_value: float) -> str:
    """The steps from the conv sum to the pooled value, with the numbers (lines fit ~90 columns)."""
    cell, w = result.cell, result.weights
    sign = "> 0: passes unchanged" if cell.normalised > 0 else f"≤ 0: × {result.slope:g}"
    lines = [
        f"conv       Σ over {len(w.kernel)} input channel(s) of patch · kernel = {cell.conv:.6f}"
        "  (no bias)",
        "BatchNorm  (conv − running mean) / √(running var + ε) · γ + β",
        f"           = ({cell.conv:.6f} {_signed(-w.mean)}) / √({w.var:.6f} + {w.eps:g})"
        f" · {w.gamma:.6f} {_signed(w.beta)}",
        f"           = {cell.normalised:.6f}",
        f"LeakyReLU  {cell.normalised:.6f} {sign} = {cell.activation:.6f}",
        f"model      its own forward pass gives {model_value:.6f} at ({cell.row}, {cell.col})",
    ]
    if result.pool is None:
        lines.append("max-pool   no 2×2 window holds this cell (odd map: the pool floors)")
    else:
        size = round(len(result.pool) ** 0.5)
        first = result.pool[0]
        window = ", ".join(f"{c.activation:.4f}" for c in result.pool)
        verdict = "this cell is the max" if result.pooled == cell.activation else "another wins"
        lines += [
            f"max-pool   rows {first.row}–{first.row + size - 1}, cols {first.col}–"
            f"{first.col + size - 1}: [{window}]",
            f"           → max {result.pooled:.6f} ({verdict}), pooled cell "
            f"({cell.row // size}, {cell.col // size})",
        ]
    return "\n".join(lines)


def head_tables(head: units.HeadArithmetic, count: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predicted logit as its largest hidden-unit terms + the rest + bias, and every digit's
    logit with its raw and calibrated softmax."""
    predicted = int(np.argmax(head.logits))
    terms = head.terms[predicted]
    top = np.argsort(-np.abs(terms), kind="stable")[:count]
    rows = [(f"hidden unit {j}", f"{head.hidden[j]:.4f}", terms[j]) for j in top]
    rows += [
        (f"the other {len(terms) - len(top)} units", "", terms.sum() - terms[top].sum()),
        ("bias", "", head.bias[predicted]),
        (f"logit {predicted}", "", head.logits[predicted]),
    ]
    probabilities = pd.DataFrame(
        {
            "digit": range(10),
            "logit": head.logits,
            "softmax(logit)": head.raw,
            f"softmax(logit / {head.temperature:.3f})": head.calibrated,
        }
    )
    return pd.DataFrame(rows, columns=["", "hidden value", "term"]), probabilities
