"""Ink extraction: from any decoded image to white-on-black ink in [0, 1], specks removed.

* a canvas with a transparent background keeps its ink in the alpha channel (a naive grayscale
  conversion would be blank), whatever the stroke colour;
* the background is read from the image's border (a bold digit may cover most of the area);
* opaque images are auto-inverted when the ink is darker than the background, and photos get a
  tile-based background estimate (uneven lighting) and a noise floor (paper texture);
* specks far smaller than the digit are dropped so they cannot stretch the bounding box.

Input comes from :func:`core.decode.to_array`, already checked and at most
:data:`core.decode.WORK_MAX_SIDE` on its longer side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from core.decode import InvalidImageError, scale_to_unit
from core.strokes import bounding_box

# Ink below this (after contrast stretch) is background for labelling and the bounding box.
INK_THRESHOLD = 0.2
# Connected ink components lighter than this fraction of the heaviest one are specks.
SPECK_FRACTION = 0.03
# Ink needs at least this contrast over the background (fraction of the full range) to count.
MIN_CONTRAST = 0.08
# The ink's bounding box must span at least this many pixels and this fraction of the image.
MIN_EXTENT_PIXELS = 2
MIN_EXTENT_FRACTION = 0.02

# Background tiles per longer side for the uneven-lighting estimate, and the variation that
# triggers it (images with a flat background skip it).
LIGHTING_TILES = 8
LIGHTING_MIN_VARIATION = 0.03

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's L
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------- to float planes


@dataclass(frozen=True)
class Planes:
    """An input split into what ink extraction and display need.

    ``gray`` is float32 luminance in [0, 1] and ``alpha`` float32 opacity or None. ``picture``
    is the input as a uint8 PIL image (L, LA, RGB or RGBA) for the ``decoded`` display stage.
    """

    gray: np.ndarray
    alpha: np.ndarray | None
    picture: Image.Image

    def display(self, backdrop: float) -> np.ndarray:
        """The image as the user sees it: uint8 L or RGB, transparency over ``backdrop``."""
        picture = self.picture
        if picture.mode in ("LA", "RGBA") and self.alpha is not None and self.alpha.min() < 1:
            level = round(backdrop * 255)
            fill = (level, level, level, 255) if picture.mode == "RGBA" else (level, 255)
            backdrop_image = Image.new(picture.mode, picture.size, fill)
            picture = Image.alpha_composite(backdrop_image, picture)
        if picture.mode in ("LA", "RGBA"):
            picture = picture.convert(picture.mode[:-1])
        return np.asarray(picture)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return (values * np.float32(255) + np.float32(0.5)).astype(np.uint8)


_MODES_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def planes(array: np.ndarray) -> Planes:
    """Split an ``[H, W]`` or ``[H, W, 1-4]`` array into :class:`Planes` (uint8 fast path)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] not in (2, 3, 4):
        raise InvalidImageError(
            f"An image array must be [H, W], [H, W, 3] or [H, W, 4]; got shape {array.shape}."
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    has_alpha = channels in (2, 4)
    if array.dtype == np.uint8:
        picture = Image.fromarray(np.ascontiguousarray(array), _MODES_BY_CHANNELS[channels])
        gray8 = array if channels == 1 else np.asarray(picture.convert("L"))
        alpha = array[:, :, -1].astype(np.float32) * np.float32(1 / 255) if has_alpha else None
        return Planes(gray8.astype(np.float32) * np.float32(1 / 255), alpha, picture)
    if has_alpha:
        color = scale_to_unit(array[:, :, : channels - 1])
        alpha = scale_to_unit(array[:, :, -1])
    else:
        color = scale_to_unit(array if array.ndim == 3 else array[:, :, None])
        alpha = None
    gray = color[:, :, 0] if color.shape[2] == 1 else color @ _LUMA
    stacked = color if alpha is None else np.concatenate([color, alpha[:, :, None]], axis=2)
    pixels = _to_uint8(stacked)
    picture = Image.fromarray(
        pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, _MODES_BY_CHANNELS[pixels.shape[2]]
    )
    return Planes(np.ascontiguousarray(gray, dtype=np.float32), alpha, picture)


# --------------------------------------------------------------------------- ink extraction


def _subsample(values: np.ndarray, limit: int = 16_384) -> np.ndarray:
    """A strided view of at most about ``limit`` pixels, enough for robust statistics."""
    step = max(1, math.isqrt(values.size // limit))
    return values[::step, ::step]


def _tile_fields(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Smooth background level and noise of ink-bright ``x`` (photos), or None if too small.

    Per tile, the 30th percentile is the background (ink covers less than most of a tile) and
    the MAD the noise; a 3×3 median over the tile grid ignores tiles that a thick stroke fills;
    bilinear upsampling gives smooth full-size fields. Also returns how much the level varies.
    """
    height, width = x.shape
    if min(height, width) < 4 * LIGHTING_TILES:
        return None
    tile = math.ceil(max(height, width) / LIGHTING_TILES)
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    padded = np.pad(x, ((0, rows * tile - height), (0, cols * tile - width)), mode="reflect")
    tiles = padded.reshape(rows, tile, cols, tile).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    sample = tiles[:, :, :: max(1, tiles.shape[2] // 1024)]
    level, median = np.percentile(sample, [30, 50], axis=2)
    noise = 1.4826 * np.median(np.abs(sample - median[:, :, None]), axis=2)
    level = ndimage.median_filter(level.astype(np.float32), size=3, mode="nearest")
    noise = ndimage.median_filter(noise.astype(np.float32), size=3, mode="nearest")

    def upsample(grid: np.ndarray) -> np.ndarray:
        field = Image.fromarray(grid, mode="F").resize(
            (cols * tile, rows * tile), Image.Resampling.BILINEAR
        )
        return np.asarray(field)[:height, :width]

    return upsample(level), upsample(noise), float(level.max() - level.min())


def _stretch(x: np.ndarray, low: float, sigma: float | np.ndarray) -> np.ndarray | None:
    """Map the background level ``low`` to 0 and the ink's core to 1; None without ink.

    ``sigma`` is the background's noise (a number or a per-pixel field). Ink must stand six
    sigmas above the background, and a noise floor of three sigmas removes paper texture. The
    ink level is the 90th percentile of clearly-above-noise pixels, so a few hot pixels cannot
    set the scale.
    """
    above = x[x > low + np.maximum(6.0 * sigma, MIN_CONTRAST / 2)]
    if above.size < MIN_EXTENT_PIXELS:
        return None
    high = float(np.percentile(_subsample_flat(above), 90))
    if high - low < MIN_CONTRAST:
        return None
    floor = low + np.minimum(3.0 * sigma, 0.5 * (high - low))
    return np.clip((x - floor) / (high - floor), 0.0, 1.0).astype(np.float32, copy=False)


def _subsample_flat(values: np.ndarray, limit: int = 65_536) -> np.ndarray:
    return values[:: max(1, values.size // limit)]


def _border(values: np.ndarray) -> np.ndarray:
    """Pixels of a frame around the image (2 % of its size, at least 1 px): the background.

    Digits rarely fill the frame, while they may cover most of the image's area, so the border
    says more about the background than the median of all pixels does.
    """
    height, width = values.shape
    t = max(1, round(0.02 * max(height, width)))
    if 2 * t >= min(height, width):
        return values.ravel()
    return np.concatenate(
        [
            values[:t].ravel(),
            values[-t:].ravel(),
            values[t:-t, :t].ravel(),
            values[t:-t, -t:].ravel(),
        ]
    )


def _ink_is_darker(gray: np.ndarray, background: float) -> bool:
    """Whether the ink is darker than the background: the longer tail away from it."""
    low, high = np.percentile(_subsample(gray), [0.2, 99.8])
    dark_tail, light_tail = background - low, high - background
    if max(dark_tail, light_tail) < MIN_CONTRAST / 2 or abs(dark_tail - light_tail) < 0.05:
        return bool(background > 0.5)
    return bool(dark_tail > light_tail)


def _drawing_on_transparency(gray: np.ndarray, alpha: np.ndarray) -> bool:
    """Whether this is strokes of one colour on a transparent background (a drawing app's export).

    The background counts as transparent when most of the image or most of its border is; the
    strokes are one colour when their luminance hardly varies (a picture with transparent
    margins is not a drawing).
    """
    transparent = alpha < 0.5
    share = float(np.mean(transparent))
    if share < 0.05 or (share < 0.5 and float(np.mean(_border(transparent))) < 0.5):
        return False
    strokes = gray[alpha > 0.5]
    return strokes.size == 0 or float(np.std(strokes)) < 0.15


def extract_ink(planes: Planes) -> tuple[np.ndarray | None, np.ndarray, bool]:
    """``(white-on-black ink in [0, 1] or None if none, display image, whether it is clean)``."""
    gray, alpha = planes.gray, planes.alpha
    if alpha is not None and _drawing_on_transparency(gray, alpha):
        # Ink = opacity × contrast to a backdrop chosen to contrast with the stroke colour.
        opaque = alpha > 0.5
        stroke = float(np.mean(gray[opaque])) if opaque.any() else 0.0
        backdrop = 1.0 if stroke < 0.5 else 0.0
        ink = alpha * np.abs(gray - np.float32(backdrop))
        return _stretch(ink, 0.0, 0.0), planes.display(backdrop), True
    backdrop = 1.0
    if alpha is not None:
        # A picture with transparent parts: they take the colour of its background.
        opaque = alpha > 0.5
        edge_gray, edge_opaque = _border(gray), _border(opaque)
        if edge_opaque.any():
            backdrop = float(np.median(edge_gray[edge_opaque]))
        elif opaque.any():
            backdrop = float(np.median(gray[opaque]))
        gray = gray * alpha + np.float32(backdrop) * (1.0 - alpha)
    display = planes.display(backdrop)
    background = float(np.median(_border(gray)))
    if _ink_is_darker(gray, background):
        gray, background = 1.0 - gray, 1.0 - background
    x = gray
    distance = np.abs(_subsample(x) - background)
    flat_share = float(np.mean(distance < 1.0 / 255))
    haze_share = float(np.mean((distance >= 1.0 / 255) & (distance < MIN_CONTRAST)))
    if flat_share >= 0.2 and haze_share < 0.05:
        # A flat background and crisp ink (a digital drawing): no lighting or noise to handle.
        return _stretch(x, background, 0.0), display, True
    fields = _tile_fields(x)
    if fields is None:
        edge = _border(x)
        sigma = 1.4826 * float(np.median(np.abs(edge - background)))
        return _stretch(x, background, sigma), display, False
    level, noise, variation = fields
    if variation >= LIGHTING_MIN_VARIATION:
        # Uneven lighting: reflectance = observed / illumination, in ink-bright terms.
        gain = 1.0 / np.maximum(1.0 - level, 0.05)
        x = np.clip((x - level) * gain, 0.0, 1.0)
        noise = noise * gain
    x = x.astype(np.float32, copy=False)
    return _stretch(x, float(np.median(_border(x))), noise), display, False


def drop_specks(ink: np.ndarray, clean: bool) -> tuple[np.ndarray, int]:
    """Keep the digit's connected components; zero specks (dust, paper texture) and faint haze.

    Returns the cleaned ink and the longer side of its largest component's box (specks alone
    make a tiny one). Works inside the bounding box of ink above the threshold (plus a 1 px
    rim), which is all that can hold a component. ``clean`` input (canvas, digital images) has
    no haze, so it is returned untouched when no speck is found.
    """
    mask = ink > INK_THRESHOLD
    box = bounding_box(mask)
    if box is None:
        return np.zeros_like(ink), 0
    top, bottom, left, right = box
    top, left = max(top - 1, 0), max(left - 1, 0)
    bottom, right = min(bottom + 1, ink.shape[0]), min(right + 1, ink.shape[1])
    labels, count = ndimage.label(mask[top:bottom, left:right], structure=_EIGHT_CONNECTED)
    if count == 1 and clean:
        return ink, max(box[1] - box[0], box[3] - box[2])
    region = ink[top:bottom, left:right]
    mass = np.bincount(labels.ravel(), weights=region.ravel(), minlength=count + 1)
    mass[0] = 0.0
    heaviest = int(np.argmax(mass))
    rows, cols = ndimage.find_objects(labels, max_label=heaviest)[heaviest - 1]
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    keep = mass >= SPECK_FRACTION * mass[heaviest]
    keep[0] = False
    if clean and keep[1:].all():
        return ink, extent
    # Anti-aliased edges just below the threshold belong to their component: keep a 1 px rim.
    out = np.zeros_like(ink)
    out[top:bottom, left:right] = region * _dilate(keep[labels])
    return out, extent


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3×3 binary dilation by shifted ORs (several times faster than ``ndimage`` here)."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    grown = out.copy()
    grown[:, 1:] |= out[:, :-1]
    grown[:, :-1] |= out[:, 1:]
    return grown
