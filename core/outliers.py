"""Outlier exposure: the non-digit images training shows the models (Hendrycks et al., ICLR 2019).

The models learn to answer "not a digit" by seeing, beside every batch of digits, a few images that
are not digits, with a loss that pushes their softmax toward uniform. Everything here is built in
code from what a user can rebuild offline (Debian fonts, strokes, noise, MNIST's own training
digits), seeded, so one ``train_all.py`` run gives the same pool everywhere.

Families (:data:`FAMILIES`), each drawn the way the dashboard sees input:

- ``font_glyphs``: letters and symbols from the *training* fonts (Liberation, FreeFont), never
  DejaVu, which the evaluation's letters use;
- ``stroke_letters``: letters drawn with a round brush at canvas widths from the training stroke
  templates below (the evaluation draws its letters from other templates, in ``core.ood``);
- ``shapes``: zigzags, spirals, grids and hatching, random-walk scribbles;
- ``doodles``: what people draw that is not a digit, from the training templates below: closed
  outlines (triangle, box, box with a cross, house, six-pointed star, three- to five-lobed
  clovers), faces that do not smile
  (neutral, frowning, surprised), sun, flower, cloud, snowflake, and waves and arcs much wider
  than tall (the evaluation's smiley, star, heart, arrow, check mark and # are never drawn);
- ``curves``: three to five smooth strokes (Catmull-Rom splines through random points), tangled
  enough that no digit is drawn that way;
- ``silhouettes``: filled, shaded shapes (random polygons and ellipses, unions of them, with
  gradient or noise fill, bars, legs and shirts filling the frame), which no pen stroke makes;
- ``textures``: noise of every density and scale, stripes, checkerboards;
- ``broken_digits``: two MNIST training digits of different classes overlaid with an offset,
  unless one digit hides along the other's strokes (:func:`own_ink_share`) or the pair lies as
  close to a training digit as free strokes may;
- ``free_strokes``: one to three smooth strokes through random points (what a user scribbles),
  kept only when no MNIST training digit lies as close as a typical real digit lies to its
  nearest one (:data:`DIGIT_LIKE_DISTANCE`), and never a stick (a "1").
- ``cut_digits``: an MNIST training digit cut in two along a random line near its centre, the
  pieces pulled 7-11 pixels apart; each piece holds at least :data:`MIN_PIECE_INK` of the ink,
  and the result passes the same distance and stick checks as free strokes.

Never anything digit-like: letters that read as digits (B D G I L O Q S Z, and J ? that come
close to 1 and 2, and lowercase a c r t y, $ and £) are left out, and every letter, drawn or set
in a font, passes the same digit-likeness check as free strokes (a narrow T reads as a 1 or a 7);
shapes are kept wider than tall sticks (a "1") and open (no ellipses, a "0"); no single MNIST
digit is ever an outlier. Fashion-MNIST, uniform/Gaussian noise at the evaluation's seeds, the evaluation's letter/shape templates and the
DejaVu fonts stay out of training: they are the test.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from core.preprocess import preprocess

FAMILIES: tuple[str, ...] = (
    "font_glyphs",
    "stroke_letters",
    "shapes",
    "doodles",
    "curves",
    "silhouettes",
    "textures",
    "broken_digits",
    "free_strokes",
    "cut_digits",
)
# Letters (and symbols) that do not read as digits.
TRAIN_GLYPHS = "ACEFHKMNPRTUVWXYefhkmnpuvwx%&@#*+=€"
TRAIN_FONT_FAMILIES: tuple[str, ...] = ("liberation", "freefont")
TRAIN_FONT_DIRS: tuple[Path, ...] = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
CANVAS = 140
MIN_SILHOUETTE_AREA = 60
# A 280-px canvas with brushes 8-40 px wide, at half scale.
BRUSH_RANGE = (4, 20)
# Free strokes closer than this (pixels in [0, 1], Euclidean) to some MNIST training digit are
# dropped: it is the median distance of a real validation digit to its nearest training digit
# (measured 4.31), so no outlier is as digit-like as a typical real digit is.
DIGIT_LIKE_DISTANCE = 4.3
# Each digit of an overlaid pair keeps at least this share of its ink where the other has none;
# below it one digit hides along the other's strokes and the pair reads as that digit (a 1 on
# the stem of a 4 keeps 30%). About 5% of pairs fall below it.
MIN_OWN_INK = 0.4
# Each piece of a cut digit holds at least this share of its ink: a sliver cut off leaves the
# digit whole.
MIN_PIECE_INK = 0.35
# Share of silhouettes that fill the frame from edge to edge.
FRAME_FILLER_SHARE = 0.5

# Letters as pen strokes in unit coordinates (x right, y down): the *training* templates.
STROKE_LETTERS: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0.1, 1.0), (0.5, 0.0), (0.9, 1.0)], [(0.27, 0.6), (0.73, 0.6)]],
    "C": [[(0.9, 0.15), (0.6, 0.0), (0.25, 0.1), (0.08, 0.5), (0.25, 0.9), (0.6, 1.0), (0.9, 0.85)]],
    "E": [[(0.85, 0.0), (0.15, 0.0), (0.15, 1.0), (0.85, 1.0)], [(0.15, 0.5), (0.7, 0.5)]],
    "F": [[(0.85, 0.0), (0.15, 0.0), (0.15, 1.0)], [(0.15, 0.5), (0.7, 0.5)]],
    "H": [[(0.15, 0.0), (0.15, 1.0)], [(0.85, 0.0), (0.85, 1.0)], [(0.15, 0.5), (0.85, 0.5)]],
    "K": [[(0.15, 0.0), (0.15, 1.0)], [(0.85, 0.0), (0.15, 0.55)], [(0.35, 0.4), (0.9, 1.0)]],
    "M": [[(0.05, 1.0), (0.15, 0.0), (0.5, 0.6), (0.85, 0.0), (0.95, 1.0)]],
    "N": [[(0.15, 1.0), (0.15, 0.0), (0.85, 1.0), (0.85, 0.0)]],
    "P": [[(0.2, 1.0), (0.2, 0.0), (0.7, 0.02), (0.85, 0.25), (0.7, 0.48), (0.2, 0.5)]],
    "R": [
        [(0.2, 1.0), (0.2, 0.0), (0.7, 0.02), (0.85, 0.25), (0.7, 0.48), (0.2, 0.5)],
        [(0.45, 0.5), (0.9, 1.0)],
    ],
    "T": [[(0.08, 0.06), (0.92, 0.0)], [(0.47, 0.03), (0.5, 1.0)]],
    "U": [[(0.12, 0.0), (0.12, 0.7), (0.3, 1.0), (0.7, 1.0), (0.88, 0.7), (0.88, 0.0)]],
    "V": [[(0.08, 0.0), (0.5, 1.0), (0.92, 0.0)]],
    "W": [[(0.0, 0.0), (0.25, 1.0), (0.5, 0.35), (0.75, 1.0), (1.0, 0.0)]],
    "X": [[(0.1, 0.0), (0.9, 1.0)], [(0.9, 0.0), (0.1, 1.0)]],
    "Y": [[(0.1, 0.0), (0.5, 0.5), (0.9, 0.0)], [(0.5, 0.5), (0.5, 1.0)]],
    "e": [[(0.15, 0.55), (0.85, 0.55), (0.75, 0.25), (0.5, 0.15), (0.2, 0.35), (0.2, 0.8),
           (0.5, 0.95), (0.85, 0.85)]],
    "m": [[(0.05, 1.0), (0.05, 0.3), (0.3, 0.25), (0.5, 0.45), (0.5, 1.0)],
          [(0.5, 0.45), (0.7, 0.25), (0.95, 0.35), (0.95, 1.0)]],
    "w": [[(0.0, 0.3), (0.25, 1.0), (0.5, 0.5), (0.75, 1.0), (1.0, 0.3)]],
}  # fmt: skip


def font_paths(families: tuple[str, ...] = TRAIN_FONT_FAMILIES) -> list[Path]:
    """The installed TrueType fonts of ``families`` (sorted, so the pool is reproducible)."""
    found: set[Path] = set()
    for root in TRAIN_FONT_DIRS:
        for family in families:
            folder = root / family
            if folder.is_dir():
                found.update(p for p in folder.glob("*.ttf"))
    return sorted(found, key=lambda p: p.name)


def _to_mnist(canvas: Image.Image) -> np.ndarray | None:
    """The dashboard's own recipe (white on black, 20 px fit, centred), None if blank."""
    result = preprocess(canvas)
    if result.blank:
        return None
    return np.round(result.image * 255.0).astype(np.uint8)


def _brush(rng: np.random.Generator) -> int:
    return int(rng.integers(BRUSH_RANGE[0], BRUSH_RANGE[1] + 1))


def _draw_strokes(
    strokes: list[list[tuple[float, float]]],
    rng: np.random.Generator,
    jitter: float = 0.04,
    thin: bool = False,
    aspect: tuple[float, float] = (0.6, 1.0),
) -> Image.Image:
    """Unit-coordinate strokes drawn on the canvas at a random size, place, slant and brush
    (``thin``: at most a twelfth of the drawing's height, so dense patterns keep their gaps;
    ``aspect``: the range of width / height)."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    height = rng.uniform(0.35, 0.85) * CANVAS
    width = height * rng.uniform(*aspect)
    if width > CANVAS - 8:
        height, width = height * (CANVAS - 8) / width, CANVAS - 8
    left = rng.uniform(4, CANVAS - width - 4)
    top = rng.uniform(4, CANVAS - height - 4)
    shear = rng.uniform(-0.25, 0.25)
    brush = _brush(rng)
    if thin:
        brush = max(2, min(brush, round(height / 12)))
    for stroke in strokes:
        points = []
        for x, y in stroke:
            x, y = x + rng.normal(0, jitter), y + rng.normal(0, jitter)
            points.append((left + (x + shear * (1 - y)) * width, top + y * height))
        draw.line(points, fill=255, width=brush, joint="curve")
        for px, py in (points[0], points[-1]):
            draw.ellipse((px - brush / 2, py - brush / 2, px + brush / 2, py + brush / 2), fill=255)
    return canvas


def font_glyph(
    rng: np.random.Generator, fonts: list[Path], bank: DigitBank | None = None
) -> np.ndarray | None:
    """One letter or symbol of :data:`TRAIN_GLYPHS` in a training font; with ``bank``, None when
    it is digit-like (:func:`_unless_digit_like`)."""
    glyph = TRAIN_GLYPHS[int(rng.integers(len(TRAIN_GLYPHS)))]
    size = int(rng.integers(40, 80))
    if fonts:
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)
    else:
        font = ImageFont.load_default(size=size)
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(canvas).text(
        (CANVAS / 2, CANVAS / 2),
        glyph,
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=int(rng.integers(0, 4)),
        stroke_fill=255,
    )
    canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    return _digit_like_checked(_to_mnist(canvas), bank)


def stroke_letter(rng: np.random.Generator, bank: DigitBank | None = None) -> np.ndarray | None:
    """One letter of :data:`STROKE_LETTERS` drawn with a round brush; with ``bank``, None when it
    is digit-like (:func:`_unless_digit_like`: a narrow T reads as a 1 or a 7)."""
    letter = sorted(STROKE_LETTERS)[int(rng.integers(len(STROKE_LETTERS)))]
    return _digit_like_checked(_to_mnist(_draw_strokes(STROKE_LETTERS[letter], rng)), bank)


def _digit_like_checked(image: np.ndarray | None, bank: DigitBank | None) -> np.ndarray | None:
    """:func:`_unless_digit_like` where there is a bank of training digits, else ``image``."""
    return image if bank is None else _unless_digit_like(image, bank)


def _zigzag(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    n = int(rng.integers(4, 9))
    return [[(i / (n - 1), float(i % 2) * rng.uniform(0.5, 1.0)) for i in range(n)]]


def _spiral(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    turns = rng.uniform(2.5, 3.5)
    t = np.linspace(0, turns * 2 * math.pi, 60)
    r = 0.05 + 0.45 * t / t[-1]
    return [[(0.5 + a * math.cos(b), 0.5 + a * math.sin(b)) for a, b in zip(r, t, strict=True)]]


def _grid(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    lines = []
    for position in np.linspace(0.0, 1.0, int(rng.integers(3, 6))):
        lines.append([(position, 0.0), (position, 1.0)])
        if rng.random() < 0.7:
            lines.append([(0.0, position), (1.0, position)])
    return lines


def _hatching(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    n = int(rng.integers(4, 8))
    return [[(i / n, 0.0), (i / n + 0.3, 1.0)] for i in range(n)]


def _random_walk(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    steps = np.cumsum(rng.normal(0, 0.18, size=(int(rng.integers(12, 30)), 2)), axis=0)
    steps -= steps.min(0)
    steps /= max(float(steps.max()), 1e-6)
    return [[(float(x), float(y)) for x, y in steps]]


SHAPES: dict[str, Callable[[np.random.Generator], list[list[tuple[float, float]]]]] = {
    "zigzag": _zigzag,
    "spiral": _spiral,
    "grid": _grid,
    "hatching": _hatching,
    "random_walk": _random_walk,
}


def shape(rng: np.random.Generator) -> np.ndarray | None:
    """One procedural shape (zigzag, spiral, grid, hatching, random walk), drawn with a brush
    thin enough to keep its gaps open; sticks narrower than 40% of their height (a "1") are
    dropped."""
    kind = sorted(SHAPES)[int(rng.integers(len(SHAPES)))]
    image = _to_mnist(_draw_strokes(SHAPES[kind](rng), rng, jitter=0.02, thin=True))
    if image is None or is_stick(image):
        return None
    return image


def _ring(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> list[tuple[float, float]]:
    """A closed ellipse in unit coordinates."""
    angles = np.linspace(0, 2 * math.pi, n)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def _polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [*points, points[0]]


def _dot(x: float, y: float) -> list[tuple[float, float]]:
    return [(x, y), (x + 0.01, y + 0.02)]


def _face(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """A face that does not smile: straight, frowning or open mouth."""
    mouth = int(rng.integers(3))
    if mouth == 0:
        lips = [(0.3, 0.72), (0.7, 0.72)]
    elif mouth == 1:
        lips = [(0.28, 0.78), (0.4, 0.68), (0.6, 0.68), (0.72, 0.78)]
    else:
        lips = _ring(0.5, 0.72, 0.1, 0.08, 12)
    return [_ring(0.5, 0.5, 0.48, 0.48, 36), _dot(0.33, 0.36), _dot(0.65, 0.36), lips]


def _sun(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    rays = int(rng.integers(6, 11))
    strokes = [_ring(0.5, 0.5, 0.22, 0.22, 20)]
    for k in range(rays):
        a = 2 * math.pi * k / rays
        strokes.append(
            [(0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)),
             (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a))]
        )  # fmt: skip
    return strokes


def _flower(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    petals = int(rng.integers(5, 8))
    strokes = [_ring(0.5, 0.5, 0.1, 0.1, 12)]
    for k in range(petals):
        a = 2 * math.pi * k / petals
        cx, cy = 0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)
        strokes.append(_ring(cx, cy, 0.16, 0.16, 14))
    return strokes


def _cloud(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    bumps = int(rng.integers(5, 8))
    points = []
    for k in range(bumps):
        start = 2 * math.pi * k / bumps
        for t in np.linspace(0, 1, 6):
            a = start + t * 2 * math.pi / bumps
            r = 0.34 + 0.14 * math.sin(math.pi * t)
            points.append((0.5 + r * math.cos(a), 0.5 + 0.8 * r * math.sin(a)))
    return [_polygon(points)]


def _snowflake(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    arms = int(rng.integers(3, 5))
    offset = rng.uniform(0, math.pi)
    return [
        [(0.5 - 0.5 * math.cos(a), 0.5 - 0.5 * math.sin(a)),
         (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a))]
        for a in offset + np.arange(arms) * math.pi / arms
    ]  # fmt: skip


def _closed_outline(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """A triangle, a box (plain, crossed or as a window) or a house."""
    kind = int(rng.integers(5))
    box = _polygon([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    if kind == 0:
        return [_polygon([(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)])]
    if kind == 1:
        return [box]
    if kind == 2:
        return [box, [(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]]
    if kind == 3:
        return [box, [(0.5, 0.0), (0.5, 1.0)], [(0.0, 0.5), (1.0, 0.5)]]
    walls = _polygon([(0.1, 0.45), (0.9, 0.45), (0.9, 1.0), (0.1, 1.0)])
    return [walls, [(0.0, 0.5), (0.5, 0.0), (1.0, 0.5)]]


def _lobed(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """A closed outline with four or five deep lobes (a clover, a blossom): never the one smooth
    loop of a "0", nor the two of an "8"."""
    lobes = int(rng.integers(4, 6))
    depth = rng.uniform(0.35, 0.55)
    phase = rng.uniform(0, 2 * math.pi)
    angles = np.linspace(0, 2 * math.pi, 60)
    radius = 0.5 * (1 - depth + depth * np.abs(np.cos(lobes * (angles + phase) / 2)))
    return [
        [
            (0.5 + r * math.cos(a), 0.5 + r * math.sin(a))
            for r, a in zip(radius, angles, strict=True)
        ]
    ]


def _star_of_david(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    up = [(0.5 + 0.5 * math.sin(a), 0.55 - 0.5 * math.cos(a)) for a in (0, 2.094, 4.189)]
    down = [(0.5 + 0.5 * math.sin(a), 0.45 + 0.5 * math.cos(a)) for a in (0, 2.094, 4.189)]
    return [_polygon(up), _polygon(down)]


def _wave(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """A wave or an arc, drawn much wider than tall."""
    t = np.linspace(0, 1, 40)
    if rng.random() < 0.5:
        periods = rng.uniform(1.0, 3.0)
        y = 0.5 + 0.5 * np.sin(2 * math.pi * periods * t + rng.uniform(0, 2 * math.pi))
    else:
        y = 1.0 - np.sin(math.pi * t) if rng.random() < 0.5 else np.sin(math.pi * t)
    return [[(float(a), float(b)) for a, b in zip(t, y, strict=True)]]


DOODLES: dict[str, Callable[[np.random.Generator], list[list[tuple[float, float]]]]] = {
    "face": _face,
    "sun": _sun,
    "flower": _flower,
    "cloud": _cloud,
    "snowflake": _snowflake,
    "closed_outline": _closed_outline,
    "star_of_david": _star_of_david,
    "lobed": _lobed,
    "wave": _wave,
}


def draw_doodle(kind: str, rng: np.random.Generator) -> np.ndarray | None:
    """Doodle ``kind`` of :data:`DOODLES` drawn with a round brush at canvas widths, MNIST
    format (flowers, clouds and clovers thin enough to keep their petals, bumps and lobes open,
    so never a "0"; waves and arcs much wider than tall); None if it came out blank."""
    aspect = {"wave": (2.0, 3.5), "cloud": (1.3, 1.8)}.get(kind, (0.8, 1.15))
    thin = kind in ("flower", "cloud", "lobed")
    return _to_mnist(_draw_strokes(DOODLES[kind](rng), rng, jitter=0.02, thin=thin, aspect=aspect))


def doodle(rng: np.random.Generator) -> np.ndarray | None:
    """One of :data:`DOODLES`, chosen at random (:func:`draw_doodle`)."""
    return draw_doodle(sorted(DOODLES)[int(rng.integers(len(DOODLES)))], rng)


def _catmull_rom(points: np.ndarray, steps: int = 12) -> list[tuple[float, float]]:
    """A smooth curve through ``points`` (uniform Catmull-Rom spline)."""
    padded = np.vstack([points[0], points, points[-1]])
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    curve = []
    for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False):
        curve.extend(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    curve.append(points[-1])
    return [(float(x), float(y)) for x, y in curve]


def curves(rng: np.random.Generator) -> np.ndarray | None:
    """Three to five smooth strokes through random points, drawn with a round brush."""
    strokes = [
        _catmull_rom(rng.uniform(0.0, 1.0, size=(int(rng.integers(3, 6)), 2)))
        for _ in range(int(rng.integers(3, 6)))
    ]
    return _to_mnist(_draw_strokes(strokes, rng, jitter=0.0, thin=True))


def _garment(rng: np.random.Generator, size: int, top: float, bottom: float) -> list:
    """A body with sleeves spreading to the frame's sides (a shirt's outline)."""
    centre = size / 2
    body = rng.uniform(0.45, 0.75) * size / 2
    reach = rng.uniform(0.85, 1.0) * size / 2
    sleeve = top + rng.uniform(0.25, 0.55) * (bottom - top)
    neck = rng.uniform(0.1, 0.25) * size
    right = [(centre + neck / 2, top), (centre + reach, top + 0.08 * size), (centre + reach, sleeve),
             (centre + body, sleeve - 0.1 * size), (centre + body, bottom)]  # fmt: skip
    return right + [(2 * centre - x, y) for x, y in reversed(right)]


def _frame_filler(pen: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """A filled bar, wedge, arch or shirt from the top of the frame to its bottom (or side to
    side): taller than the 20 px box every digit is fitted into, so never a digit."""
    top = rng.uniform(0, 0.08) * size
    bottom = size - rng.uniform(0, 0.08) * size
    if rng.random() < 0.3:
        pen.polygon(_garment(rng, size, top, bottom), fill=255)
        return
    width = rng.uniform(0.25, 0.75) * size
    centre = rng.uniform(0.4, 0.6) * size
    spread = rng.uniform(0.6, 1.4)
    top_half, bottom_half = width / 2, width / 2 * spread
    outline = [
        (centre - top_half, top),
        (centre + top_half, top),
        (centre + bottom_half, bottom),
        (centre - bottom_half, bottom),
    ]
    if rng.random() < 0.5:  # split from below into two legs
        slit = rng.uniform(0.3, 0.85) * (bottom - top) + top
        gap = rng.uniform(0.1, 0.3) * width
        outline[3:3] = [(centre + gap / 2, bottom), (centre, slit), (centre - gap / 2, bottom)]
    if rng.random() < 0.3:  # lying down
        outline = [(y, x) for x, y in outline]
    pen.polygon(outline, fill=255)


def silhouette(rng: np.random.Generator) -> np.ndarray | None:
    """A filled, shaded shape, 28×28 directly: one to three random polygons or ellipses, or (a
    :data:`FRAME_FILLER_SHARE` of the time) a shape filling the frame from edge to edge, with at
    most one of them. None for a sliver (under :data:`MIN_SILHOUETTE_AREA` pixels, or under 5 pixels across), which
    would read as a "1"."""
    size = 112
    canvas = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(canvas)
    filler = rng.random() < FRAME_FILLER_SHARE
    if filler:
        _frame_filler(pen, rng, size)
    for _ in range(int(rng.integers(0, 2)) if filler else int(rng.integers(1, 4))):
        cx, cy = rng.uniform(30, 82, size=2)
        if rng.random() < 0.5:
            n = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * math.pi, n))
            radii = rng.uniform(25, 55, n)
            pen.polygon(
                [
                    (cx + r * math.cos(a), cy + r * math.sin(a))
                    for a, r in zip(angles, radii, strict=True)
                ],
                fill=255,
            )
        else:
            rx, ry = rng.uniform(25, 50, size=2)
            pen.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    mask = np.asarray(canvas.resize((28, 28), Image.Resampling.BOX), np.float64) / 255.0
    solid = mask > 0.5
    if solid.sum() < MIN_SILHOUETTE_AREA or min(solid.any(0).sum(), solid.any(1).sum()) < 5:
        return None
    y, x = np.mgrid[0:28, 0:28] / 27.0
    angle = rng.uniform(0, 2 * math.pi)
    shade = 0.5 + 0.5 * (x * math.cos(angle) + y * math.sin(angle))
    shade = (1 - rng.uniform(0, 0.7)) + rng.uniform(0, 0.7) * shade
    shade = np.clip(shade + rng.normal(0, rng.uniform(0, 0.15), size=shade.shape), 0.2, 1.0)
    return np.round(mask * shade * 255).astype(np.uint8)


def texture(rng: np.random.Generator) -> np.ndarray:
    """Noise at a random density and scale, stripes or a checkerboard, 28×28 directly."""
    kind = int(rng.integers(4))
    if kind == 0:  # sparse or dense speckle, optionally blurred into blobs
        field = (rng.random((28, 28)) < rng.uniform(0.05, 0.6)).astype(np.float32)
        field = ndimage.gaussian_filter(field, rng.uniform(0.0, 1.5))
    elif kind == 1:  # smooth low-frequency noise
        field = ndimage.zoom(rng.random((int(rng.integers(3, 8)),) * 2), 28 / 7, order=3)[:28, :28]
        field = np.pad(field, ((0, 28 - field.shape[0]), (0, 28 - field.shape[1])), mode="edge")
    elif kind == 2:  # stripes at a random angle
        y, x = np.mgrid[0:28, 0:28]
        angle = rng.uniform(0, math.pi)
        field = np.sin((x * math.cos(angle) + y * math.sin(angle)) * rng.uniform(0.5, 1.5)) > 0
    else:  # checkerboard of random cell size
        cell = int(rng.integers(2, 7))
        y, x = np.mgrid[0:28, 0:28]
        field = ((x // cell + y // cell) % 2).astype(np.float32)
    field = np.asarray(field, np.float64)
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    return np.round(field * rng.uniform(0.6, 1.0) * 255).astype(np.uint8)


class DigitBank:
    """MNIST training digits as a matrix, for the distance from images to their nearest one."""

    CHUNK = 256

    def __init__(self, digits: np.ndarray) -> None:
        self.flat = np.asarray(digits, np.float32).reshape(len(digits), -1) / 255.0
        self.norms = (self.flat**2).sum(1)

    def nearest_distances(self, images: np.ndarray) -> np.ndarray:
        """Euclidean distance (pixels in [0, 1]) from each of ``images`` (uint8 ``[N, 28, 28]``)
        to its nearest training digit, float32 ``[N]``."""
        flat = np.asarray(images, np.float32).reshape(len(images), -1) / 255.0
        out = np.empty(len(flat), np.float32)
        for start in range(0, len(flat), self.CHUNK):
            block = flat[start : start + self.CHUNK]
            squared = (block**2).sum(1)[:, None] + self.norms[None] - 2.0 * block @ self.flat.T
            out[start : start + self.CHUNK] = np.sqrt(np.maximum(squared.min(1), 0.0))
        return out

    def nearest_distance(self, image: np.ndarray) -> float:
        """:meth:`nearest_distances` of one image."""
        return float(self.nearest_distances(np.asarray(image)[None])[0])


def is_stick(image: np.ndarray) -> bool:
    """Narrower than 40% of its height: it would read as a "1"."""
    rows, cols = np.flatnonzero(image.max(1) > 50), np.flatnonzero(image.max(0) > 50)
    return len(rows) == 0 or (cols[-1] - cols[0] + 1) < 0.4 * (rows[-1] - rows[0] + 1)


def _unless_digit_like(image: np.ndarray | None, bank: DigitBank) -> np.ndarray | None:
    """``image``, or None when it is blank, a stick or lies as close to a training digit as a
    typical real digit does (:data:`DIGIT_LIKE_DISTANCE`)."""
    if image is None or is_stick(image) or bank.nearest_distance(image) < DIGIT_LIKE_DISTANCE:
        return None
    return image


def free_strokes(rng: np.random.Generator, bank: DigitBank) -> np.ndarray | None:
    """One to three smooth strokes (Catmull-Rom splines through three or four random points) with
    a round brush at canvas widths; None when it is a stick or lies as close to a training digit
    as a typical real digit does (:data:`DIGIT_LIKE_DISTANCE`)."""
    strokes = [
        _catmull_rom(rng.uniform(0.0, 1.0, size=(int(rng.integers(3, 5)), 2)))
        for _ in range(int(rng.integers(1, 4)))
    ]
    return _unless_digit_like(
        _to_mnist(_draw_strokes(strokes, rng, jitter=0.0, aspect=(0.6, 1.4))), bank
    )


def own_ink_share(first: np.ndarray, second: np.ndarray) -> float:
    """The smaller of the two digits' shares of ink (pixels above 64) lying outside the other's
    ink grown by one pixel: near 0 when one digit lies along the other's strokes."""
    ink = [np.asarray(first) > 64, np.asarray(second) > 64]
    grown = [ndimage.binary_dilation(mask) for mask in ink]
    shares = [
        (ink[i] & ~grown[1 - i]).sum() / ink[i].sum() if ink[i].any() else 0.0 for i in (0, 1)
    ]
    return float(min(shares))


def broken_digit(
    rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, bank: DigitBank
) -> np.ndarray | None:
    """Two training digits of different classes overlaid, the second shifted by 4-8 pixels;
    None when one digit hides along the other's strokes (:func:`own_ink_share` under
    :data:`MIN_OWN_INK`) or the pair lies as close to a training digit as
    :data:`DIGIT_LIKE_DISTANCE`: either way it reads as a digit."""
    first = int(rng.integers(len(digits)))
    second = int(rng.integers(len(digits)))
    if labels[first] == labels[second]:
        return None
    shift = rng.integers(4, 9, size=2) * rng.choice([-1, 1], size=2)
    moved = np.roll(digits[second], tuple(int(s) for s in shift), axis=(0, 1))
    if own_ink_share(digits[first], moved) < MIN_OWN_INK:
        return None
    overlay = np.maximum(digits[first], moved)
    image = _to_mnist(Image.fromarray(overlay).filter(ImageFilter.MaxFilter(1)))
    if image is None or bank.nearest_distance(image) < DIGIT_LIKE_DISTANCE:
        return None
    return image


def cut_digit(rng: np.random.Generator, digits: np.ndarray, bank: DigitBank) -> np.ndarray | None:
    """A training digit cut in two along a random line within 2 pixels of its centre of ink, one
    piece pulled 7-11 pixels away across the cut (and up to 2 along it); None when a piece holds
    under :data:`MIN_PIECE_INK` of the ink, or the result is a stick or lies as close to a training
    digit as :data:`DIGIT_LIKE_DISTANCE`."""
    digit = np.asarray(digits[int(rng.integers(len(digits)))], np.uint8)
    angle = rng.uniform(0.0, math.pi)
    normal = np.array([math.sin(angle), math.cos(angle)])  # (row, column)
    ink = digit.astype(np.float64)
    centre = np.array(ndimage.center_of_mass(ink)) + rng.uniform(-2, 2, 2)
    rows, cols = np.mgrid[0:28, 0:28]
    side = (rows - centre[0]) * normal[0] + (cols - centre[1]) * normal[1] > 0
    if min(ink[side].sum(), ink[~side].sum()) < MIN_PIECE_INK * ink.sum():
        return None
    along = np.array([-normal[1], normal[0]])
    offset = rng.uniform(7, 11) * normal + rng.uniform(-2, 2) * along
    frame = np.zeros((56, 56), np.uint8)
    frame[14:42, 14:42] = np.where(side, 0, digit)
    moved = np.zeros((56, 56), np.uint8)
    moved[14:42, 14:42] = np.where(side, digit, 0)
    moved = ndimage.shift(moved, offset, order=1, prefilter=False)
    return _unless_digit_like(_to_mnist(Image.fromarray(np.maximum(frame, moved))), bank)


def build_outlier_pool(
    n: int,
    seed: int,
    digits: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` outlier images, uint8 ``[n, 28, 28]``, the families in equal shares (seeded).

    ``digits``/``labels`` are MNIST *training* digits for ``broken_digits`` and ``cut_digits``
    and for the digit-likeness checks; without them those three families are replaced by the
    others.
    """
    fonts = font_paths()
    bank = DigitBank(digits) if digits is not None and labels is not None else None
    makers: dict[str, Callable[[np.random.Generator], np.ndarray | None]] = {
        "font_glyphs": lambda r: font_glyph(r, fonts, bank),
        "stroke_letters": lambda r: stroke_letter(r, bank),
        "shapes": shape,
        "doodles": doodle,
        "curves": curves,
        "silhouettes": silhouette,
        "textures": texture,
    }
    if bank is not None:
        makers["broken_digits"] = lambda r: broken_digit(r, digits, labels, bank)
        makers["free_strokes"] = lambda r: free_strokes(r, bank)
        makers["cut_digits"] = lambda r: cut_digit(r, digits, bank)
    names = list(makers)
    pool = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        name = names[i % len(names)]
        rng = np.random.default_rng([seed, i])
        image = None
        while image is None:
            image = makers[name](rng)
        pool[i] = image
    return pool


@functools.lru_cache(maxsize=2)
def cached_pool(n: int, seed: int) -> np.ndarray:
    """:func:`build_outlier_pool` without broken digits, cached (for tests and benchmarks)."""
    pool = build_outlier_pool(n, seed)
    pool.flags.writeable = False
    return pool
