"""Digits drawn the way people draw them: pen strokes, canvas images, photos of paper.

Used to measure what users meet but MNIST does not contain (``canvas_style_accuracy``: every
MNIST test digit re-drawn on the 280×280 canvas with a thick round brush, anywhere, at any size),
by the benchmarks and by the tests. Everything is seeded: the same call gives the same pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from core.preprocess import preprocess

CANVAS = 280

# Digits as pen strokes (polylines) in unit coordinates (x right, y down), drawn like people do.
_CIRCLE = [(0.5 + 0.36 * math.sin(t), 0.5 - 0.45 * math.cos(t)) for t in np.linspace(0, 6.3, 40)]
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_CIRCLE],
    1: [[(0.42, 0.14), (0.56, 0.04), (0.56, 0.96)]],
    4: [[(0.62, 0.96), (0.62, 0.04), (0.1, 0.66), (0.92, 0.66)]],
    7: [[(0.12, 0.06), (0.88, 0.06), (0.42, 0.96)]],
}


def stroke_mask(
    digit: int,
    size: tuple[int, int] = (CANVAS, CANVAS),
    box: tuple[float, float, float, float] = (70, 40, 210, 240),
    width: float = 18,
    supersample: int = 2,
) -> np.ndarray:
    """Anti-aliased float32 ink mask ``[H, W]`` in [0, 1] of ``digit`` drawn inside ``box``.

    ``box`` is (left, top, right, bottom) in pixels; ``width`` is the pen width in pixels.
    """
    k = supersample
    canvas = Image.new("L", (size[0] * k, size[1] * k), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = box
    for stroke in STROKES[digit]:
        points = [
            ((left + x * (right - left)) * k, (top + y * (bottom - top)) * k) for x, y in stroke
        ]
        draw.line(points, fill=255, width=max(1, round(width * k)), joint="curve")
        radius = width * k / 2
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    small = canvas.resize(size, Image.Resampling.BOX) if k > 1 else canvas
    return np.asarray(small, dtype=np.float32) / 255.0


def canvas_rgba(ink: np.ndarray, transparent: bool = True, color=(0, 0, 0)) -> np.ndarray:
    """A drawing as canvas components and drawing apps export it: uint8 RGBA, stroke colour with
    ink as opacity.

    Transparent background: RGB is the stroke colour where drawn, alpha is the ink. White
    background: everything opaque, the stroke blended over white.
    """
    alpha = np.clip(ink, 0, 1)[:, :, None]
    stroke = np.asarray(color, dtype=np.float32)[None, None, :]
    if transparent:
        rgb = np.where(alpha > 0, stroke, 0.0)
        out = np.concatenate([rgb, alpha * 255.0], axis=2)
    else:
        rgb = stroke * alpha + 255.0 * (1 - alpha)
        out = np.concatenate([rgb, np.full_like(alpha, 255.0)], axis=2)
    return np.rint(out).astype(np.uint8)


def paper_photo(
    ink: np.ndarray, seed: int = 0, gradient: float = 0.35, noise: float = 0.03
) -> np.ndarray:
    """A phone photo of pencil on paper: dark ink, uneven lighting, paper grain; uint8 RGB."""
    rng = np.random.default_rng(seed)
    height, width = ink.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - gradient * (0.6 * xx / width + 0.4 * yy / height)
    grain = ndimage.gaussian_filter(rng.normal(0, noise, (height, width)), 1.0) * 2
    paper = np.array([0.93, 0.90, 0.84], np.float32)
    reflect = paper[None, None, :] * (1 - 0.8 * ink[:, :, None]) + grain[:, :, None]
    return np.clip(reflect * light[:, :, None] * 255, 0, 255).astype(np.uint8)


def render_mnist_canvas(
    digit: np.ndarray, rng: np.random.Generator, size: int = CANVAS
) -> tuple[np.ndarray, dict[str, float]]:
    """Render an MNIST digit the way people draw it on the canvas; ``(RGBA uint8, parameters)``.

    The digit's ink box is scaled to 30-90 % of the canvas height (bicubic), thresholded to a
    pen shape and dilated by a round brush 8-20 px across (strokes far thicker than MNIST's,
    relative to the digit, most of all for small digits), anti-aliased, placed anywhere on the
    canvas, and drawn black on a transparent or a white background.
    """
    image = np.asarray(digit, dtype=np.float32) / 255.0
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height_frac = float(rng.uniform(0.3, 0.9))
    brush = int(rng.integers(8, 21))
    transparent = bool(rng.integers(0, 2))
    target_h = round(height_frac * size)
    scale = target_h / crop.shape[0]
    target_w = min(max(1, round(crop.shape[1] * scale)), size - brush - 4)
    up = Image.fromarray(crop, mode="F").resize((target_w, target_h), Image.Resampling.BICUBIC)
    pad = brush // 2 + 2
    shape = np.pad(np.asarray(up) > 0.5, pad)
    pen = ndimage.distance_transform_edt(~shape) <= brush / 2
    soft = Image.fromarray((pen * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    ink = np.asarray(soft, dtype=np.float32) / 255.0
    ink = ink[: min(ink.shape[0], size), : min(ink.shape[1], size)]
    top = int(rng.integers(0, size - ink.shape[0] + 1))
    left = int(rng.integers(0, size - ink.shape[1] + 1))
    full = np.zeros((size, size), np.float32)
    full[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    params = {"height_frac": height_frac, "brush": brush, "transparent": transparent}
    return canvas_rgba(full, transparent=transparent), params


def canvas_style_accuracy(
    predictor,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Accuracy of each loaded variant on MNIST digits drawn canvas-style vs. fed directly.

    Every digit is rendered with :func:`render_mnist_canvas` (digit ``i`` with its own generator
    seeded by ``(seed, i)``, so a digit's rendering does not depend on the others) and goes
    through the full ``preprocess`` → ``Predictor`` path; the direct figure feeds the same digits
    as they are. Returns ``{variant: {"canvas": acc, "direct": acc, "blank": count}}``.
    """
    processed = np.zeros((len(images), 28, 28), np.float32)
    blank = 0
    for i, digit in enumerate(images):
        rng = np.random.default_rng([seed, i])
        result = preprocess(render_mnist_canvas(np.asarray(digit), rng)[0])
        blank += result.blank
        processed[i] = result.image
    labels = np.asarray(labels)
    figures = {}
    for variant in predictor.models:
        canvas = predictor.predict_batch(processed, variant).argmax(1)
        direct = predictor.predict_batch(np.asarray(images), variant).argmax(1)
        figures[variant] = {
            "canvas": float(np.mean(canvas == labels)),
            "direct": float(np.mean(direct == labels)),
            "blank": float(blank),
        }
    return figures
