"""Stroke width and geometry: MNIST's pen width, its 20 px fit and its centre of mass.

MNIST's recipe (LeCun et al.): the ink's bounding box is resized so its longer side is 20 px
(keeping the aspect ratio, anti-aliased), then placed in a 28×28 frame so that its centre of mass
sits at the frame's centre. Before the fit, stroke width is brought into MNIST's range relative
to the digit's size (canvas strokes are far thicker than MNIST's pen, photographed pen strokes
far thinner).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

FRAME_SIZE = 28
FIT_SIZE = 20
# MNIST's mean centre of mass in (row, column) pixel indices, measured on the test set.
FRAME_CENTRE = 14.0

# Stroke widths are measured and adjusted on a grid this many pixels on the digit's longer side,
# and brought into MNIST's 5th-95th percentile range there (per-digit median widths of 3,000 test
# digits: 5th 5.7, median 8, 90th 10, 95th 12). Strokes wider than the range are thinned to the
# 90th percentile, not just to the edge: thick canvas strokes that close loops read better there
# (canvas-style gap of cnn2 0.50 -> 0.47 points), and MNIST's own digits up to the 95th
# percentile are still left untouched.
STROKE_GRID = 64
STROKE_RANGE = (5.0, 12.0)
THINNED_WIDTH = 10.0


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of the True pixels, bottom and right exclusive; None if none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# --------------------------------------------------------------------------- fit and centre


def stroke_widths(mask: np.ndarray) -> np.ndarray:
    """Local stroke widths of a binary shape: twice the inner distance along its ridges."""
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ridge = mask & (inside >= ndimage.maximum_filter(inside, size=3))
    return 2.0 * inside[ridge]


def normalise_strokes(cropped: np.ndarray) -> np.ndarray:
    """Thin or thicken strokes into MNIST's range of widths relative to the digit's size.

    Canvas strokes are far thicker than MNIST's pen, most of all for small digits, and photos of
    pen on paper far thinner. On a grid where the longer side is :data:`STROKE_GRID` px, the
    median ridge width is brought into :data:`STROKE_RANGE` (MNIST's 5th-95th percentiles on
    that grid) by a round erosion or dilation; widths already in range are left untouched, wider
    ones are thinned to :data:`THINNED_WIDTH`. Erosion never removes the thinner tenth of the
    strokes.
    """
    height, width = cropped.shape
    scale = STROKE_GRID / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grid = np.asarray(
        Image.fromarray(np.ascontiguousarray(cropped, np.float32), "F").resize(
            size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        )
    )
    mask = grid > 0.5
    if not mask.any():
        return cropped
    widths = stroke_widths(mask)
    median = float(np.median(widths))
    low, high = STROKE_RANGE
    if low <= median <= high:
        return cropped
    if median > high:
        radius = min((median - THINNED_WIDTH) / 2, (float(np.percentile(widths, 10)) - 3.0) / 2)
        if radius < 0.5:
            return cropped
        shaped = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1] > radius
    else:
        radius = (low - median) / 2
        pad = math.ceil(radius) + 1
        shaped = ndimage.distance_transform_edt(~np.pad(mask, pad)) <= radius
    box = bounding_box(shaped)
    if box is None:
        return cropped
    top, bottom, left, right = box
    return shaped[top:bottom, left:right].astype(np.float32)


def fit(cropped: np.ndarray) -> np.ndarray:
    """Resize so the longer side is 20 px, aspect ratio kept, anti-aliased (Lanczos)."""
    height, width = cropped.shape
    scale = FIT_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = Image.fromarray(np.ascontiguousarray(cropped, np.float32), mode="F").resize(
        size, Image.Resampling.LANCZOS
    )
    fitted = np.clip(np.asarray(fitted), 0.0, 1.0)
    # MNIST's strokes saturate; thin strokes averaged down to 20 px are brought back to full ink.
    peak = float(fitted.max())
    return fitted / peak if 0.0 < peak < 1.0 else fitted


def centre(fitted: np.ndarray) -> np.ndarray:
    """Place ``fitted`` in a 28×28 frame with its centre of mass at MNIST's centre.

    Integer offsets (no resampling blur), clamped so no ink is pushed out of the frame.
    """
    height, width = fitted.shape
    total = float(fitted.sum())
    if total > 0:
        com_row = float(fitted.sum(axis=1) @ np.arange(height)) / total
        com_col = float(fitted.sum(axis=0) @ np.arange(width)) / total
    else:
        com_row, com_col = (height - 1) / 2, (width - 1) / 2
    top = min(max(math.floor(FRAME_CENTRE - com_row + 0.5), 0), FRAME_SIZE - height)
    left = min(max(math.floor(FRAME_CENTRE - com_col + 0.5), 0), FRAME_SIZE - width)
    frame = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    frame[top : top + height, left : left + width] = fitted
    return frame
