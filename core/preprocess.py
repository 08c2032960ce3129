"""From a canvas, an upload or a photo to MNIST's format: white ink on black, 20 px fit, 28×28.

MNIST's recipe (LeCun et al.): the ink's bounding box is resized so its longer side is 20 px
(keeping the aspect ratio, anti-aliased), then placed in a 28×28 frame so that its centre of mass
sits at the frame's centre. Everything before that turns real input into clean ink:

* decoding is limited to an allowlist of formats, a byte limit and a pixel limit read from the
  header before any pixel is decoded, so hostile files fail fast with :class:`InvalidImageError`;
* a canvas with a transparent background keeps its ink in the alpha channel (a naive grayscale
  conversion would be blank), whatever the stroke colour;
* the background is read from the image's border (a bold digit may cover most of the area);
* opaque images are auto-inverted when the ink is darker than the background, and photos get a
  tile-based background estimate (uneven lighting) and a noise floor (paper texture);
* specks far smaller than the digit are dropped so they cannot stretch the bounding box;
* stroke width is brought into MNIST's range relative to the digit's size (canvas strokes are
  far thicker than MNIST's pen, photographed pen strokes far thinner);
* blank or near-blank input is flagged ``blank`` instead of being predicted.

Everything is NumPy/SciPy/Pillow on whole arrays: a 280×280 canvas takes a few milliseconds.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from scipy import ndimage

MAX_UPLOAD_BYTES: int = 8 * 1024 * 1024
MAX_PIXELS: int = 40_000_000
DEFAULT_NORMALIZATION: dict[str, float] = {"mean": 0.1307, "std": 0.3081}
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "BMP", "WEBP", "GIF")
# Pillow's plugin ids to try; MPO files are opened by the JPEG plugin (it has no id of its own).
_OPEN_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
SUPPORTED_FORMATS_TEXT = "PNG, JPEG, BMP, WebP or GIF"
BLANK_MESSAGE = "The image is blank: draw or upload a digit."

FRAME_SIZE = 28
FIT_SIZE = 20
# MNIST's mean centre of mass in (row, column) pixel indices, measured on the test set.
FRAME_CENTRE = 14.0
# Larger inputs are box-reduced first: the digit ends up 20 px tall, so detail beyond this is moot.
WORK_MAX_SIDE = 1024
# Ink below this (after contrast stretch) is background for labelling and the bounding box.
INK_THRESHOLD = 0.2
# Connected ink components lighter than this fraction of the heaviest one are specks.
SPECK_FRACTION = 0.03
# Ink needs at least this contrast over the background (fraction of the full range) to count.
MIN_CONTRAST = 0.08
# The ink's bounding box must span at least this many pixels and this fraction of the image.
MIN_EXTENT_PIXELS = 2
MIN_EXTENT_FRACTION = 0.02
# Stroke widths are measured and adjusted on a grid this many pixels on the digit's longer side,
# and brought into MNIST's 5th-95th percentile range there (per-digit median widths of 3,000 test
# digits: 5th 5.7, median 8, 90th 10, 95th 12). Strokes wider than the range are thinned to the
# 90th percentile, not just to the edge: thick canvas strokes that close loops read better there
# (canvas-style gap of cnn2 0.50 -> 0.47 points), and MNIST's own digits up to the 95th
# percentile are still left untouched.
STROKE_GRID = 64
STROKE_RANGE = (5.0, 12.0)
THINNED_WIDTH = 10.0
NORMALISE_STROKES = True
# Background tiles per longer side for the uneven-lighting estimate, and the variation that
# triggers it (images with a flat background skip it).
LIGHTING_TILES = 8
LIGHTING_MIN_VARIATION = 0.03

# Pillow's own decompression-bomb guard must never be looser than ours (None disables it).
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's L
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# What Pillow's decoders raise on damaged data (truncated streams, bad chunks, bad headers).
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)
# Magic numbers of formats people try to upload that are not allowed, for a precise message.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)


class InvalidImageError(ValueError):
    """The input cannot be used as an image; the message is a sentence meant for the user."""


@dataclass(frozen=True)
class PreprocessResult:
    """One input in MNIST's format, with every intermediate stage kept for display.

    ``image`` is float32 ``[28, 28]`` in [0, 1], white ink on black. ``tensor`` is ``image``
    normalised as ``[1, 1, 28, 28]``. ``blank`` means there is no digit: never predict it.
    ``stages`` holds, in order, ``decoded`` (uint8 L or RGB as the user sees it), ``ink``
    (float white-on-black ink), ``cropped`` (its bounding box), ``fitted`` (longer side 20 px)
    and ``centred`` (the 28×28 result).
    """

    image: np.ndarray
    tensor: torch.Tensor
    blank: bool
    stages: dict[str, np.ndarray]

    def normalized(self, normalization: Mapping[str, float]) -> torch.Tensor:
        """``[1, 1, 28, 28]`` tensor of ``image`` under another checkpoint's normalisation."""
        return _normalize(self.image, normalization)


def _mean_std(normalization: Mapping[str, float] | None) -> tuple[float, float]:
    """``(mean, std)`` of a normalisation (MNIST's by default), checked to be usable."""
    norm = DEFAULT_NORMALIZATION if normalization is None else normalization
    mean, std = float(norm["mean"]), float(norm["std"])
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"Invalid normalization {dict(norm)!r}: std must be positive.")
    return mean, std


def _normalize(image: np.ndarray, normalization: Mapping[str, float] | None) -> torch.Tensor:
    mean, std = _mean_std(normalization)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).clone()
    return tensor.sub_(mean).div_(std).view(1, 1, FRAME_SIZE, FRAME_SIZE)


# --------------------------------------------------------------------------- decoding


def _sniff_other_format(data: bytes) -> str | None:
    """Name of a known but disallowed format from its magic number, if recognisable."""
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "SVG/XML"
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None


def _allowed_format(data: bytes) -> str | None:
    """Which allowed format ``data`` claims to be by its magic number, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _damaged(kind: str) -> InvalidImageError:
    return InvalidImageError(
        f"The {kind} file is damaged or truncated and cannot be read. "
        "Please upload the complete image again."
    )


def _unsupported(data: bytes) -> InvalidImageError:
    claimed = _allowed_format(data)
    if claimed:
        return _damaged(claimed)
    other = _sniff_other_format(data)
    if other:
        return InvalidImageError(
            f"This is a {other} file, which is not a supported image format. "
            f"Please upload a {SUPPORTED_FORMATS_TEXT} image."
        )
    return InvalidImageError(
        "This file is not a supported image format (or not an image at all). "
        f"Please upload a {SUPPORTED_FORMATS_TEXT} image."
    )


def _too_many_pixels(excess: str = "has more pixels than") -> InvalidImageError:
    """The pixel-limit error; ``excess`` says by how much when the size is known."""
    return InvalidImageError(
        f"The image {excess} the limit of {MAX_PIXELS / 1e6:g} megapixels. "
        "Please upload a smaller image."
    )


def _check_dimensions(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImageError("The image has no pixels.")
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(f"is {width}×{height} pixels, more than")


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except _DECODE_ERRORS:
        return 1


def _exif_upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos); damaged EXIF is ignored, not fatal."""
    if _orientation(image) == 1:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        return image


def decode_image(data: bytes) -> Image.Image:
    """Decode uploaded bytes into a loaded, upright PIL image, or raise :class:`InvalidImageError`.

    Only PNG, JPEG/MPO, BMP, WebP and GIF are opened (never Pillow's other plugins, such as EPS,
    which would run Ghostscript). Size and pixel limits are checked before decoding; GIFs and
    MPOs give their first frame; large JPEGs are decoded at a reduced scale.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"decode_image expects bytes, not {type(data).__name__}.")
    data = bytes(data)
    if not data:
        raise InvalidImageError("The file is empty. Please upload an image of a digit.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidImageError(
            f"The file is {len(data) / 2**20:.1f} MB, more than the limit of "
            f"{MAX_UPLOAD_BYTES / 2**20:g} MB. Please upload a smaller image."
        )
    try:
        image = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as error:
        raise _too_many_pixels() from error
    except _DECODE_ERRORS as error:
        raise _unsupported(data) from error
    if image.format not in ALLOWED_FORMATS:
        raise _unsupported(data)
    _check_dimensions(*image.size)
    try:
        if image.format in ("JPEG", "MPO"):
            image.draft(None, (WORK_MAX_SIDE, WORK_MAX_SIDE))
        image.load()
    except Image.DecompressionBombError as error:
        raise _too_many_pixels() from error
    except _DECODE_ERRORS as error:
        raise _damaged(image.format or "image") from error
    return _exif_upright(image)


# --------------------------------------------------------------------------- to float planes


def _scale_to_unit(values: np.ndarray) -> np.ndarray:
    """Scale numbers of unknown range into [0, 1] float32.

    Integers are read as 8-bit or 16-bit when they fit, floats as [0, 1] when they fit (or as
    8-bit when they are whole numbers up to 255); anything else is scaled by its own min-max.
    """
    if values.dtype == np.uint8:
        return values.astype(np.float32) * np.float32(1 / 255)
    if values.dtype == np.uint16 or values.dtype == np.dtype(">u2"):
        return values.astype(np.float32) * np.float32(1 / 65535)
    if values.dtype == bool:
        return values.astype(np.float32)
    work = values.astype(np.float64)
    if not np.isfinite(work).all():
        work = np.nan_to_num(work, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(work.min()), float(work.max())) if work.size else (0.0, 0.0)
    floating = np.issubdtype(values.dtype, np.floating)
    if low >= 0 and high <= 1 and floating:
        scaled = work
    elif low >= 0 and high <= 255 and (not floating or np.array_equal(work, np.round(work))):
        scaled = work / 255.0
    elif low >= 0 and high <= 65535 and not floating:
        scaled = work / 65535.0
    elif high > low:
        scaled = (work - low) / (high - low)
    else:
        scaled = np.zeros_like(work)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _reduce_large(image: Image.Image) -> Image.Image:
    """Box-reduce images whose longer side exceeds :data:`WORK_MAX_SIDE` (speed and memory)."""
    factor = math.ceil(max(image.size) / WORK_MAX_SIDE)
    if factor <= 1:
        return image
    if image.mode.startswith("I;16"):
        return image.resize(
            (max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX
        )
    return image.reduce(factor)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Pixels as an array in a mode this module understands: L, LA, RGB, RGBA or 16/32-bit/float."""
    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode == "La":
        image = image.convert("LA")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        try:
            image = image.convert("RGB")
        except ValueError as error:
            raise InvalidImageError(
                f"Images in the {mode} colour mode are not supported. "
                "Please save the image as an RGB or grayscale PNG or JPEG."
            ) from error
    image = _reduce_large(image)
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        array = array.astype(np.uint16)
    return array


@dataclass(frozen=True)
class _Planes:
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


def _planes(array: np.ndarray) -> _Planes:
    """Split an ``[H, W]`` or ``[H, W, 1-4]`` array into :class:`_Planes` (uint8 fast path)."""
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
        return _Planes(gray8.astype(np.float32) * np.float32(1 / 255), alpha, picture)
    if has_alpha:
        color = _scale_to_unit(array[:, :, : channels - 1])
        alpha = _scale_to_unit(array[:, :, -1])
    else:
        color = _scale_to_unit(array if array.ndim == 3 else array[:, :, None])
        alpha = None
    gray = color[:, :, 0] if color.shape[2] == 1 else color @ _LUMA
    stacked = color if alpha is None else np.concatenate([color, alpha[:, :, None]], axis=2)
    pixels = _to_uint8(stacked)
    picture = Image.fromarray(
        pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, _MODES_BY_CHANNELS[pixels.shape[2]]
    )
    return _Planes(np.ascontiguousarray(gray, dtype=np.float32), alpha, picture)


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
    """Whether this is strokes of one colour on a transparent background (the drawable canvas).

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


def _ink(planes: _Planes) -> tuple[np.ndarray | None, np.ndarray, bool]:
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


def _drop_specks(ink: np.ndarray, clean: bool) -> tuple[np.ndarray, int]:
    """Keep the digit's connected components; zero specks (dust, paper texture) and faint haze.

    Returns the cleaned ink and the longer side of its largest component's box (specks alone
    make a tiny one). Works inside the bounding box of ink above the threshold (plus a 1 px
    rim), which is all that can hold a component. ``clean`` input (canvas, digital images) has
    no haze, so it is returned untouched when no speck is found.
    """
    mask = ink > INK_THRESHOLD
    box = _bounding_box(mask)
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


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# --------------------------------------------------------------------------- fit and centre


def _stroke_widths(mask: np.ndarray) -> np.ndarray:
    """Local stroke widths of a binary shape: twice the inner distance along its ridges."""
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ridge = mask & (inside >= ndimage.maximum_filter(inside, size=3))
    return 2.0 * inside[ridge]


def _normalise_strokes(cropped: np.ndarray) -> np.ndarray:
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
    widths = _stroke_widths(mask)
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
    box = _bounding_box(shaped)
    if box is None:
        return cropped
    top, bottom, left, right = box
    return shaped[top:bottom, left:right].astype(np.float32)


def _fit(cropped: np.ndarray) -> np.ndarray:
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


def _centre(fitted: np.ndarray) -> np.ndarray:
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


# --------------------------------------------------------------------------- entry point


def _blank_result(
    display: np.ndarray, ink: np.ndarray | None, normalization: Mapping[str, float] | None
) -> PreprocessResult:
    empty = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    if ink is None:
        ink = np.zeros(display.shape[:2], dtype=np.float32)
    stages = {
        "decoded": display,
        "ink": ink,
        "cropped": ink,
        "fitted": np.zeros((FIT_SIZE, FIT_SIZE), dtype=np.float32),
        "centred": empty,
    }
    return PreprocessResult(empty, _normalize(empty, normalization), True, stages)


def _reduce_large_array(array: np.ndarray) -> np.ndarray:
    """Block-mean arrays whose longer side exceeds :data:`WORK_MAX_SIDE`, keeping their dtype."""
    factor = math.ceil(max(array.shape[:2]) / WORK_MAX_SIDE)
    if factor <= 1:
        return array
    height, width = array.shape[0] // factor, array.shape[1] // factor
    blocks = array[: height * factor, : width * factor].reshape(
        height, factor, width, factor, *array.shape[2:]
    )
    reduced = blocks.mean(axis=(1, 3), dtype=np.float64)
    if np.issubdtype(array.dtype, np.integer):
        reduced = np.rint(reduced)
    return reduced.astype(array.dtype)


def _to_array(source: bytes | bytearray | memoryview | Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(source, bytes | bytearray | memoryview):
        source = decode_image(bytes(source))
    if isinstance(source, Image.Image):
        _check_dimensions(*source.size)
        try:
            source.load()
        except _DECODE_ERRORS as error:
            raise InvalidImageError(
                "The image is damaged or truncated and cannot be read. "
                "Please upload the complete image again."
            ) from error
        return _pil_to_array(_exif_upright(source))
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise InvalidImageError(
                f"An image array must be a non-empty [H, W] or [H, W, C] array; got {source.shape}."
            )
        _check_dimensions(source.shape[1], source.shape[0])
        if not (np.issubdtype(source.dtype, np.number) or source.dtype == bool):
            raise InvalidImageError(f"An image array must hold numbers, not {source.dtype}.")
        if np.issubdtype(source.dtype, np.complexfloating):
            raise InvalidImageError("An image array must hold real numbers.")
        return _reduce_large_array(source)
    raise TypeError(
        "preprocess expects bytes, a PIL image or a NumPy array, not " + type(source).__name__
    )


def preprocess(
    source: bytes | bytearray | memoryview | Image.Image | np.ndarray | None,
    normalization: Mapping[str, float] | None = None,
) -> PreprocessResult:
    """Turn raw bytes, a PIL image or an image array into MNIST's format.

    Arrays may be the drawable canvas's RGBA ``image_data`` (uint8 ``[H, W, 4]``, ink in alpha
    when the background is transparent), ``[H, W]`` or ``[H, W, 3]``; uint8, uint16, bool and
    float arrays are understood. ``None`` (a canvas before its first stroke) and blank or
    near-blank images give a ``blank`` result; unreadable input raises
    :class:`InvalidImageError`. ``normalization`` defaults to MNIST's mean and std.
    """
    _mean_std(normalization)  # a bad normalisation is the caller's bug: fail before any work
    if source is None:
        return _blank_result(np.zeros((FRAME_SIZE, FRAME_SIZE), np.uint8), None, normalization)
    ink, display, clean = _ink(_planes(_to_array(source)))
    if ink is None:
        return _blank_result(display, None, normalization)
    ink, largest = _drop_specks(ink, clean)
    box = _bounding_box(ink > INK_THRESHOLD / 2)
    if box is None or largest < max(MIN_EXTENT_PIXELS, MIN_EXTENT_FRACTION * max(ink.shape)):
        return _blank_result(display, ink, normalization)
    top, bottom, left, right = box
    cropped = ink[top:bottom, left:right]
    fitted = _fit(_normalise_strokes(cropped) if NORMALISE_STROKES else cropped)
    centred = _centre(fitted)
    if not centred.any():
        return _blank_result(display, ink, normalization)
    stages = {
        "decoded": display,
        "ink": ink,
        "cropped": cropped,
        "fitted": fitted,
        "centred": centred,
    }
    return PreprocessResult(centred, _normalize(centred, normalization), False, stages)
