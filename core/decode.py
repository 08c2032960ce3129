"""Safe decoding of untrusted input: the security boundary between a user's file and the pipeline.

Decoding is limited to an allowlist of formats, a byte limit and a pixel limit read from the
header before any pixel is decoded, so hostile files fail fast with :class:`InvalidImageError`;
EXIF orientation is applied to photos, 16-bit and float images are scaled to [0, 1], and very
large images are box-reduced before any further work. :func:`to_array` is the one entry point
the pipeline uses for bytes, PIL images and arrays alike.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

MAX_UPLOAD_BYTES: int = 8 * 1024 * 1024
MAX_PIXELS: int = 40_000_000
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "BMP", "WEBP", "GIF")
# Pillow's plugin ids to try; MPO files are opened by the JPEG plugin (it has no id of its own).
_OPEN_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
SUPPORTED_FORMATS_TEXT = "PNG, JPEG, BMP, WebP or GIF"
# Larger inputs are box-reduced first: the digit ends up 20 px tall, so detail beyond this is moot.
WORK_MAX_SIDE = 1024

# Pillow's own decompression-bomb guard must never be looser than ours (None disables it).
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

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


def scale_to_unit(values: np.ndarray) -> np.ndarray:
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
            (max(1, image.width // factor), max(1, image.height // factor)),
            Image.Resampling.BOX,
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


def to_array(
    source: bytes | bytearray | memoryview | Image.Image | np.ndarray,
) -> np.ndarray:
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
