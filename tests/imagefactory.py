"""Test images made in code: encoded files and damaged files, plus the drawn digits of
:mod:`core.canvas_style` (stroke-drawn digits, canvases, photos) that the tests use.

No binary fixtures: every image a test needs is drawn here or there, so each says what it is.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from core.canvas_style import (
    CANVAS,
    STROKES,
    canvas_rgba,
    canvas_style_accuracy,
    paper_photo,
    render_mnist_canvas,
    stroke_mask,
)

__all__ = [
    "CANVAS",
    "EPS_BYTES",
    "STROKES",
    "canvas_rgba",
    "canvas_style_accuracy",
    "encode",
    "paper_photo",
    "png_chunk",
    "png_claiming",
    "render_mnist_canvas",
    "stroke_mask",
]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """Bytes of ``image`` saved as ``fmt`` (PNG, JPEG, GIF, BMP, WEBP, TIFF, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` × ``height`` 8-bit gray pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


EPS_BYTES = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
    b"newpath 4 4 moveto 24 24 lineto stroke showpage\n%%EOF\n"
)
