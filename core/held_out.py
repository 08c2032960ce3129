"""Held-out drawings for evaluating rejection: letters and shapes people draw that are not digits.

These templates are used only to *evaluate* (``core.ood``'s ``drawn_letters`` and ``shapes``
sets); training's outlier pool (``core.outliers``) draws its letters from other templates and never
draws these shapes. Each drawing goes on the 280×280 canvas with a round brush 8-40 px wide (the
dashboard's range), at a random size, place and slant, with jittered points, and then through the
dashboard's own preprocessing, so it looks exactly like what a user's drawing becomes.

Letters that read as digits (B D G I L O Q S Z) are left out: rejecting them is not expected.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from core.preprocess import preprocess

CANVAS = 280
BRUSH_RANGE = (8, 40)
Strokes = list[list[tuple[float, float]]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24):
    """Points of an elliptical arc (angles in degrees, y down)."""
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Letters drawn differently from training's templates (rounded tops, serifs, other proportions).
LETTERS: dict[str, Strokes] = {
    "A": [[(0.05, 1.0), (0.45, 0.05), (0.55, 0.05), (0.95, 1.0)], [(0.2, 0.7), (0.8, 0.7)]],
    "C": [_arc(0.55, 0.5, 0.45, 0.5, 40, 320)],
    "E": [[(0.9, 0.05), (0.1, 0.0), (0.12, 0.5), (0.1, 1.0), (0.9, 0.95)], [(0.12, 0.5), (0.6, 0.48)]],
    "F": [[(0.9, 0.0), (0.1, 0.05), (0.1, 1.0)], [(0.1, 0.45), (0.6, 0.45)]],
    "H": [[(0.1, 0.05), (0.12, 1.0)], [(0.9, 0.0), (0.88, 0.95)], [(0.12, 0.45), (0.88, 0.45)]],
    "J": [[(0.3, 0.0), (0.95, 0.0)], [(0.65, 0.0), (0.65, 0.75), *_arc(0.4, 0.75, 0.25, 0.25, 0, 160, 10)]],
    "K": [[(0.1, 0.0), (0.1, 1.0)], [(0.8, 0.0), (0.1, 0.5), (0.85, 1.0)]],
    "M": [[(0.05, 1.0), (0.05, 0.0), (0.5, 0.7), (0.95, 0.0), (0.95, 1.0)]],
    "N": [[(0.1, 1.0), (0.1, 0.0), (0.9, 1.0), (0.9, 0.0)]],
    "P": [[(0.15, 1.0), (0.15, 0.0), *_arc(0.45, 0.25, 0.4, 0.25, -90, 90, 12), (0.15, 0.5)]],
    "R": [[(0.15, 1.0), (0.15, 0.0), *_arc(0.45, 0.25, 0.4, 0.25, -90, 90, 12), (0.15, 0.5), (0.9, 1.0)]],
    "T": [[(0.0, 0.0), (1.0, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],
    "U": [[(0.1, 0.0), *_arc(0.5, 0.6, 0.4, 0.4, 180, 0, 16), (0.9, 0.0)]],
    "V": [[(0.0, 0.0), (0.45, 1.0), (0.55, 1.0), (1.0, 0.0)]],
    "W": [[(0.0, 0.0), (0.2, 1.0), (0.5, 0.2), (0.8, 1.0), (1.0, 0.0)]],
    "X": [[(0.0, 0.05), (1.0, 0.95)], [(1.0, 0.0), (0.0, 1.0)]],
    "Y": [[(0.0, 0.0), (0.5, 0.45)], [(1.0, 0.0), (0.2, 1.0)]],
}  # fmt: skip

SHAPES: dict[str, Strokes] = {
    "smiley": [
        _arc(0.5, 0.5, 0.48, 0.48, 0, 360, 40),
        [(0.33, 0.35), (0.34, 0.38)],
        [(0.66, 0.35), (0.67, 0.38)],
        _arc(0.5, 0.55, 0.25, 0.2, 20, 160, 12),
    ],
    "star": [
        [
            (0.5 + 0.5 * math.sin(math.radians(144 * k)), 0.55 - 0.5 * math.cos(math.radians(144 * k)))
            for k in range(6)
        ]
    ],
    "heart": [
        [
            (0.5, 0.25),
            *_arc(0.27, 0.25, 0.23, 0.2, 0, -180, 12),
            (0.5, 1.0),
            *_arc(0.73, 0.25, 0.23, 0.2, 0, -180, 12),
        ]
    ],
    "arrow": [[(0.0, 0.5), (1.0, 0.5)], [(0.65, 0.15), (1.0, 0.5), (0.65, 0.85)]],
    "check mark": [[(0.0, 0.55), (0.35, 0.95), (1.0, 0.0)]],
    "hash": [
        [(0.35, 0.0), (0.25, 1.0)],
        [(0.75, 0.0), (0.65, 1.0)],
        [(0.0, 0.33), (1.0, 0.33)],
        [(0.0, 0.67), (1.0, 0.67)],
    ],
}  # fmt: skip
# Wide shapes are drawn wider than tall.
_ASPECT = {"arrow": (1.2, 1.6), "hash": (0.9, 1.1), "smiley": (0.9, 1.1), "heart": (0.9, 1.1)}


def draw(
    strokes: Strokes,
    rng: np.random.Generator,
    aspect: tuple[float, float] = (0.6, 1.0),
    brush: int | None = None,
) -> Image.Image:
    """The strokes on a white 280×280 canvas in black, as the dashboard's canvas sends them
    (``brush`` px wide; random in :data:`BRUSH_RANGE` when None)."""
    canvas = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(canvas)
    drawn_brush = int(rng.integers(BRUSH_RANGE[0], BRUSH_RANGE[1] + 1))
    brush = drawn_brush if brush is None else brush
    height = min(rng.uniform(0.4, 0.85) * CANVAS, CANVAS - brush - 8)
    width = min(height * rng.uniform(*aspect), CANVAS - brush - 8)
    left = rng.uniform(brush / 2 + 2, CANVAS - width - brush / 2 - 2)
    top = rng.uniform(brush / 2 + 2, CANVAS - height - brush / 2 - 2)
    slant = rng.uniform(-0.15, 0.15)
    for stroke in strokes:
        points = [
            (
                left + (x + slant * (1 - y) + rng.normal(0, 0.02)) * width,
                top + (y + rng.normal(0, 0.02)) * height,
            )
            for x, y in stroke
        ]
        pen.line(points, fill=0, width=brush, joint="curve")
        for px, py in (points[0], points[-1]):
            pen.ellipse((px - brush / 2, py - brush / 2, px + brush / 2, py + brush / 2), fill=0)
    return canvas


def _to_mnist(canvas: Image.Image) -> np.ndarray:
    return np.round(preprocess(canvas).image * 255.0).astype(np.uint8)


def drawn_letter(index: int, rng: np.random.Generator) -> np.ndarray:
    """Letter number ``index`` (cycling through :data:`LETTERS`), drawn and preprocessed."""
    letter = sorted(LETTERS)[index % len(LETTERS)]
    return _to_mnist(draw(LETTERS[letter], rng))


def drawn_shape(index: int, rng: np.random.Generator) -> np.ndarray:
    """Shape number ``index`` (cycling through :data:`SHAPES`), drawn and preprocessed."""
    name = list(SHAPES)[index % len(SHAPES)]
    return _to_mnist(draw(SHAPES[name], rng, _ASPECT.get(name, (0.8, 1.1))))
