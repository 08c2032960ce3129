"""Pen strokes from the drawing pad: checked, then drawn into the image the models read.

The dashboard's pad sends each drawing as strokes (a brush width and the points the pen passed
through, in pad pixels). The browser is not trusted, so :func:`parse_strokes` accepts only
bounded lists of finite numbers; :func:`render_strokes` draws them with a round brush, black on a
white 280×280 canvas, exactly as the pad shows them, for :func:`core.preprocess.preprocess`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

PAD_SIZE = 280
MAX_STROKES = 200
MAX_POINTS = 20_000
WIDTH_RANGE = (1.0, 100.0)
# Points may leave the pad while the pen is down (pointer capture); they are kept, clamped here.
MARGIN = 100.0


@dataclass(frozen=True)
class Stroke:
    """One pen stroke: brush ``width`` in pad pixels and the ``points`` (x, y) it went through."""

    width: float
    points: tuple[tuple[float, float], ...]


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} is not finite")
    return number


def parse_strokes(raw: object) -> list[Stroke]:
    """Strokes from the pad's JSON (``[{"w": width, "p": [[x, y], ...]}, ...]``).

    Raises ``ValueError`` with a short reason for anything else: not a list, too many strokes or
    points, a width outside :data:`WIDTH_RANGE`, a point that is not two finite numbers.
    Coordinates are clamped to the pad plus :data:`MARGIN`.
    """
    if not isinstance(raw, list):
        raise ValueError("the strokes are not a list")
    if len(raw) > MAX_STROKES:
        raise ValueError(f"more than {MAX_STROKES} strokes")
    total = 0
    strokes = []
    low, high = -MARGIN, PAD_SIZE + MARGIN
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("p"), list) or not item["p"]:
            raise ValueError("a stroke has no points")
        width = _number(item.get("w"), "a stroke width")
        if not WIDTH_RANGE[0] <= width <= WIDTH_RANGE[1]:
            raise ValueError(f"a stroke width of {width:g} px")
        total += len(item["p"])
        if total > MAX_POINTS:
            raise ValueError(f"more than {MAX_POINTS:,} points")
        points = []
        for point in item["p"]:
            if not isinstance(point, list | tuple) or len(point) != 2:
                raise ValueError("a point is not (x, y)")
            x, y = (_number(v, "a coordinate") for v in point)
            points.append((min(max(x, low), high), min(max(y, low), high)))
        strokes.append(Stroke(width, tuple(points)))
    return strokes


def render_strokes(
    strokes: list[Stroke], size: int = PAD_SIZE, supersample: int = 2
) -> Image.Image:
    """The strokes drawn black on a white ``size``×``size`` canvas with a round brush (greyscale),
    anti-aliased like the pad's own drawing (drawn ``supersample`` times larger, then averaged)."""
    k = supersample
    canvas = Image.new("L", (size * k, size * k), 255)
    pen = ImageDraw.Draw(canvas)
    for stroke in strokes:
        points = [(x * k, y * k) for x, y in stroke.points]
        radius = stroke.width * k / 2
        if len(points) > 1:
            pen.line(points, fill=0, width=max(1, round(stroke.width * k)), joint="curve")
        for x, y in (points[0], points[-1]):
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return canvas.resize((size, size), Image.Resampling.BOX) if k > 1 else canvas
