"""Turning untrusted bytes, PIL images and arrays into a checked NumPy array: the security boundary.

Everything a user hands the dashboard passes through here before any other code looks at it.
What this module guarantees:

* only PNG, JPEG/MPO, BMP, WebP and GIF bytes are ever decoded, by Pillow's plugins for those
  formats alone (never EPS, which would run Ghostscript, or any other plugin);
* the byte limit (:data:`MAX_UPLOAD_BYTES`) is checked before anything is parsed, and the pixel
  limit (:data:`MAX_PIXELS`) from the header before any pixel is decoded; Pillow's own
  decompression-bomb guard is never looser than ours;
* a **memory budget** (:data:`MEMORY_BUDGET_BYTES`): before any pixel is decoded, the peak memory
  of decoding is estimated from the header, from the decoded size of every intermediate (bands ×
  bytes per band × pixels of the decoded image, Pillow's per-row table, the decoder's own buffers
  such as a progressive JPEG's coefficients or WebP's frame canvases, the EXIF transpose copy and
  the float32 arrays later in the pipeline), and files over budget are refused. Large images are
  reduced early (``Image.draft`` for JPEG; converted and ``reduce``-d tile by tile, so a palette
  image is never converted to RGBA at full size) and set upright after the reduction;
* a **time budget**: structures that cost time without adding pixels are counted before Pillow
  sees them (JPEG segments and progressive scans, PNG chunks, GIF blocks), and decoding runs under
  a CPU-time deadline (:data:`DECODE_CPU_SECONDS`, checked on every read Pillow makes);
* damaged, truncated, disguised, unsupported or over-budget input fails with
  :class:`InvalidImageError`, whose message is a sentence for the user (never a Pillow traceback
  or warning: Pillow's warnings are silenced while it works); damaged EXIF is ignored;
* :func:`to_array` returns a non-empty ``[H, W]`` or ``[H, W, C]`` array of real numbers (or
  bools), upright by its EXIF orientation, whose longer side is at most :data:`WORK_MAX_SIDE`.
"""

from __future__ import annotations

import io
import math
import re
import struct
import time
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

MAX_UPLOAD_BYTES: int = 8 * 1024 * 1024
MAX_PIXELS: int = 40_000_000
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "MPO", "BMP", "WEBP", "GIF")
# Pillow's plugin ids to try; MPO files are opened by the JPEG plugin (it has no id of its own).
_OPEN_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
SUPPORTED_FORMATS_TEXT = "PNG, JPEG, BMP, WebP or GIF"

# Larger inputs are box-reduced first: the digit ends up 20 px tall, so detail beyond this is moot.
WORK_MAX_SIDE = 1024

# The estimated peak memory of decoding one upload and reducing it to WORK_MAX_SIDE (measured
# peaks stay within about 10 % of the estimate), and the CPU time Pillow may spend decoding it.
MEMORY_BUDGET_BYTES: int = 384 * 2**20
DECODE_CPU_SECONDS: float = 1.0
# Structures that cost decoding time without adding pixels. Cameras and editors write fewer than
# 20 JPEG scans (libjpeg's progressive script has 10) and a few dozen segments; 8 MB of PNG holds
# about a thousand 8 KB IDAT chunks; a GIF's extensions before its first image are a few blocks.
MAX_JPEG_SCANS = 200
MAX_JPEG_SEGMENTS = 2_000
MAX_JPEG_JUNK_BYTES = 256 * 1024
# Every scan of a progressive JPEG walks all 8×8 blocks of its components (about 4 ns each).
MAX_JPEG_BLOCK_VISITS = 150_000_000
MAX_PNG_CHUNKS = 50_000
MAX_GIF_BLOCKS = 100_000

# Pillow's own decompression-bomb guard must never be looser than ours (None disables it).
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Nor its limit on text decompressed from PNG zTXt/iTXt chunks (64 MB by default), which the
# memory budget does not otherwise see.
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, 8 * 2**20)

# Bytes per pixel of Pillow's storage by mode (multi-band modes use 4 bytes a pixel); every row
# also costs a pointer in the image's row table, which matters for absurdly tall images.
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_ROW_BYTES = 8
# Measured extra bytes per pixel beyond the decoded image: WebP's decoder keeps two RGBA canvases
# and hands back a copy of the frame; Pillow's RLE BMP decoder builds the pixels twice in Python.
_WEBP_EXTRA_PER_PIXEL = 13
_BMP_RLE_EXTRA_PER_PIXEL = 2
# Large images are converted and reduced in tiles of about this size, and the reduced image's
# float32 planes later in the pipeline (ink extraction, display) take about this much.
_TILE_BYTES = 32 * 2**20
_TILE_BYTES_PER_PIXEL = 16
_PIPELINE_BYTES = 16 * 4 * WORK_MAX_SIDE**2

# What Pillow's decoders raise on damaged data (truncated streams, bad chunks, bad headers).
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
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
# Format names said with a leading vowel sound take "an".
_AN_FORMATS = frozenset({"ICO", "ICNS", "HTML", "AVIF", "EPS", "SVG/XML"})
# Pillow's format ids as users know them.
_FORMAT_NAMES = {"WEBP": "WebP", "MPO": "JPEG"}
# Sizes of the BMP info headers Pillow reads.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class InvalidImageError(ValueError):
    """The input cannot be used as an image; the message is a sentence meant for the user."""


class _DecodeTimeout(Exception):
    """Raised inside Pillow (from a read) once decoding has used up its CPU time."""


# --------------------------------------------------------------------------- messages


def _article(name: str) -> str:
    return "an" if name in _AN_FORMATS else "a"


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
    if data.startswith(b"BM") and (
        len(data) < 18 or int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "BMP"
    return None


def _format_name(image_format: str | None) -> str:
    if not image_format:
        return "image"
    return _FORMAT_NAMES.get(image_format, image_format)


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
            f"This is {_article(other)} {other} file, which is not a supported image format. "
            f"Please upload a {SUPPORTED_FORMATS_TEXT} image."
        )
    return InvalidImageError(
        "This file is not a supported image format (or not an image at all). "
        f"Please upload a {SUPPORTED_FORMATS_TEXT} image."
    )


def _too_complex(kind: str, what: str) -> InvalidImageError:
    return InvalidImageError(
        f"The {kind} file {what}, far more than ordinary images have, so it would take too long "
        "to decode. Please save it again as an ordinary PNG or JPEG."
    )


def _too_slow() -> InvalidImageError:
    return InvalidImageError(
        f"The image takes more than {DECODE_CPU_SECONDS:g} s to decode, so it was not read. "
        "Please save it again as an ordinary PNG or JPEG, or upload a smaller image."
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


# --------------------------------------------------------------------------- structure scans


@dataclass
class _Layout:
    """What the header says about the cost of decoding, before Pillow parses anything."""

    size: tuple[int, int] | None = None
    # Bytes the format's decoder needs besides the decoded image (buffers, canvases, copies).
    decoder_bytes: int = 0
    # Extra bytes per decoded pixel the decoder needs (WebP canvases, BMP RLE copies).
    extra_per_pixel: int = 0


_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# The next marker after entropy-coded data: 0xFF followed by neither a stuffed 0x00, a restart
# marker (0xD0-0xD7) nor a fill byte (no repetition, so the search stays linear).
_JPEG_NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
# Any marker, between segments.
_JPEG_ANY_MARKER = re.compile(rb"\xff[\x01-\xfe]")


def _scan_jpeg(data: bytes) -> _Layout:
    """Walk the first JPEG's segments: refuse too many segments, scans or block visits.

    A progressive (or multi-scan) JPEG keeps every DCT coefficient of the full-size image in
    memory whatever the draft scale, and each scan walks all blocks of its components: N empty
    scans cost N full passes and almost no bytes.
    """
    layout = _Layout()
    position, end = 2, len(data)
    segments = scans = visits = junk = 0
    components: dict[int, int] = {}  # component id -> its number of 8×8 blocks
    buffered = False
    while position + 4 <= end:
        if data[position] != 0xFF or data[position + 1] in (0x00, 0xFF):
            # Junk or fill bytes: Pillow reads those before the first scan one byte at a time.
            found = _JPEG_ANY_MARKER.search(data, position)
            if found is None:
                break
            if scans == 0:
                junk += found.start() - position
                if junk > MAX_JPEG_JUNK_BYTES:
                    raise _too_complex("JPEG", "has too many stray bytes between its segments")
            position = found.start()
            continue
        marker = data[position + 1]
        if marker == 0xD9:  # end of the (first) image
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_complex("JPEG", f"has more than {MAX_JPEG_SEGMENTS:,} segments")
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            break
        body = data[position + 4 : position + 2 + length]
        if marker in _JPEG_SOF and len(body) >= 6:
            height, width, count = struct.unpack(">HHB", body[1:6])
            sampling = [
                (body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15)
                for i in range(count)
                if len(body) >= 9 + 3 * i
            ]
            h_max = max((h for _, h, _ in sampling), default=1) or 1
            v_max = max((v for _, _, v in sampling), default=1) or 1
            components = {
                ident: math.ceil(math.ceil(width * h / h_max) / 8)
                * math.ceil(math.ceil(height * v / v_max) / 8)
                for ident, h, v in sampling
            }
            buffered = marker in _JPEG_PROGRESSIVE
            layout.size = (width, height)
        position += 2 + length
        if marker != 0xDA:
            continue
        scans += 1
        if scans > MAX_JPEG_SCANS:
            raise _too_complex("JPEG", f"is built from more than {MAX_JPEG_SCANS} scans")
        selectors = body[1 : 1 + 2 * body[0] : 2] if body else b""
        visits += sum(components.get(ident, 0) for ident in selectors)
        if visits > MAX_JPEG_BLOCK_VISITS:
            raise _too_complex("JPEG", "needs more decoding passes than its size warrants")
        # Skip the entropy-coded data that follows (stuffed 0xFF00 and restart markers).
        found = _JPEG_NEXT_MARKER.search(data, position)
        if found is None:
            break
        position = found.start()
    if buffered or scans > 1:
        layout.decoder_bytes = 128 * sum(components.values())  # 64 coefficients × 2 bytes
    return layout


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _scan_png(data: bytes) -> _Layout:
    """Count the chunks (each costs Python work in Pillow) and size the decoder's row buffers."""
    layout = _Layout()
    position, end, chunks = 8, len(data), 0
    while position + 8 <= end:
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _too_complex("PNG", f"has more than {MAX_PNG_CHUNKS:,} chunks")
        if kind == b"IHDR" and length >= 13 and position + 21 <= end:
            width, height, depth, colour = struct.unpack(
                ">IIBB", data[position + 8 : position + 18]
            )
            layout.size = (width, height)
            bits = depth * _PNG_CHANNELS.get(colour, 4)
            layout.decoder_bytes = 2 * (math.ceil(width * bits / 8) + 1)  # previous + current row
        if kind == b"IEND" or length > end:
            break
        position += 12 + length
    return layout


def _scan_gif(data: bytes) -> _Layout:
    """Count the blocks before the first image (Pillow reads each one in Python)."""
    layout = _Layout()
    if len(data) < 13:
        return layout
    layout.size = struct.unpack("<HH", data[6:10])
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    end, blocks = len(data), 0
    while position < end:
        byte = data[position]
        if byte in (0x2C, 0x3B):  # image descriptor or trailer
            break
        blocks += 1
        if byte != 0x21:  # Pillow skips unknown bytes one at a time
            position += 1
        else:
            position += 2
            while position < end:
                size = data[position]
                position += 1 + size
                if size == 0:
                    break
                blocks += 1
                if blocks > MAX_GIF_BLOCKS:
                    break
        if blocks > MAX_GIF_BLOCKS:
            raise _too_complex("GIF", f"has more than {MAX_GIF_BLOCKS:,} blocks before its image")
    layout.extra_per_pixel = 1  # the first frame's disposal backdrop
    return layout


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size from a WebP header (VP8X, lossy VP8 or lossless VP8L), as Pillow reads it."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _scan(kind: str | None, data: bytes) -> _Layout:
    if kind == "JPEG":
        return _scan_jpeg(data)
    if kind == "PNG":
        return _scan_png(data)
    if kind == "GIF":
        return _scan_gif(data)
    if kind == "WebP":
        size = _webp_size(data)
        if size is not None:
            _check_dimensions(*size)
            _check_memory(_estimate(size, "RGBA", 0, _WEBP_EXTRA_PER_PIXEL))
        return _Layout(size, 0, _WEBP_EXTRA_PER_PIXEL)
    if kind == "BMP" and len(data) >= 34 and int.from_bytes(data[14:18], "little") >= 40:
        compression = int.from_bytes(data[30:34], "little")
        return _Layout(None, 0, _BMP_RLE_EXTRA_PER_PIXEL if compression in (1, 2) else 0)
    return _Layout()


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class _Estimate:
    width: int
    height: int
    total: int


def _image_bytes(size: tuple[int, int], mode: str) -> int:
    """Memory of one Pillow image: its pixels plus its table of row pointers."""
    width, height = size
    return width * height * _STORAGE_BYTES.get(mode, 4) + height * _ROW_BYTES


def _estimate(
    size: tuple[int, int], mode: str, decoder_bytes: int, extra_per_pixel: int, copies: int = 1
) -> _Estimate:
    """Peak bytes to decode ``size`` pixels in ``mode`` and reduce them to the working size.

    ``copies`` counts full-size images alive at once (2 when an EXIF transpose copy is made).
    Conversion (e.g. palette + tRNS to RGBA) happens tile by tile on large images, so it costs at
    most a tile; images within :data:`WORK_MAX_SIDE` are converted whole.
    """
    width, height = size
    pixels = width * height
    converting = min(_TILE_BYTES, pixels * _TILE_BYTES_PER_PIXEL + height * 3 * _ROW_BYTES)
    total = (
        copies * _image_bytes(size, mode)
        + decoder_bytes
        + extra_per_pixel * pixels
        + converting
        + _PIPELINE_BYTES
    )
    return _Estimate(width, height, total)


def _check_memory(estimate: _Estimate) -> None:
    if estimate.total > MEMORY_BUDGET_BYTES:
        raise InvalidImageError(
            f"The image is too large to process: decoding its {estimate.width:,}×"
            f"{estimate.height:,} pixels would need about {estimate.total / 2**20:,.0f} MB of "
            f"memory, more than the {MEMORY_BUDGET_BYTES / 2**20:g} MB allowed. "
            "Please upload a smaller image."
        )


class _DeadlineReader(io.BytesIO):
    """The upload's bytes, refusing to be read once decoding has used its CPU time.

    Pillow parses headers in Python and feeds its C decoders in blocks, always through ``read``,
    so checking the thread's CPU time there bounds both. Once expired it stays expired, so a
    plugin that swallowed the first :class:`_DecodeTimeout` meets another on its next read.
    """

    def __init__(self, data: bytes, seconds: float) -> None:
        super().__init__(data)
        self.deadline = time.thread_time() + seconds
        self.expired = False
        self._reads = 0

    def _tick(self, size: int | None) -> None:
        self._reads += 1
        if self.expired or (
            (self._reads & 63 == 0 or size is None or size < 0 or size >= 4096)
            and time.thread_time() > self.deadline
        ):
            self.expired = True
            raise _DecodeTimeout

    def read(self, size: int | None = -1, /) -> bytes:
        self._tick(size)
        return super().read(size)

    def readline(self, size: int | None = -1, /) -> bytes:
        self._tick(size)
        return super().readline(size)


# --------------------------------------------------------------------------- decoding


def _exif_orientation(info: dict) -> int:
    """The EXIF orientation (1-8) from an image's raw EXIF bytes; 1 when absent or damaged.

    Reads only the Orientation tag of the first IFD, with a bounded loop (at most 65,535 entries),
    instead of Pillow's full EXIF parser (which a large PNG eXIf or WebP EXIF chunk makes slow).
    """
    raw = info.get("exif")
    if raw is None and isinstance(info.get("Raw profile type exif"), str):
        try:
            raw = bytes.fromhex("".join(info["Raw profile type exif"].split("\n")[3:]))
        except ValueError:
            return 1
    if not isinstance(raw, bytes | bytearray):
        return 1
    if raw.startswith(b"Exif\x00\x00"):
        raw = raw[6:]
    order = {b"II": "<", b"MM": ">"}.get(bytes(raw[:2]))
    if order is None or len(raw) < 8:
        return 1
    magic, offset = struct.unpack(order + "HI", raw[2:8])
    if magic != 42 or offset + 2 > len(raw):
        return 1
    (count,) = struct.unpack(order + "H", raw[offset : offset + 2])
    start = offset + 2
    for index in range(min(count, (len(raw) - start) // 12)):
        entry = raw[start + 12 * index : start + 12 * index + 12]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag != 0x0112:
            continue
        if kind == 3:
            (value,) = struct.unpack(order + "H", entry[8:10])
        elif kind == 4:
            (value,) = struct.unpack(order + "I", entry[8:12])
        elif kind == 1:
            value = entry[8]
        else:
            return 1
        return value if 1 <= value <= 8 else 1
    return 1


# EXIF orientation -> the transpose that sets the image upright (as ImageOps.exif_transpose).
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient_array(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` set upright by an EXIF orientation (same result as Pillow's transposes)."""
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 3:
        array = array[::-1, ::-1]
    elif orientation == 4:
        array = array[::-1]
    elif orientation == 5:
        array = array.swapaxes(0, 1)
    elif orientation == 6:
        array = np.rot90(array, -1)
    elif orientation == 7:
        array = array[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        array = np.rot90(array, 1)
    else:
        return array
    return np.ascontiguousarray(array)


def _decode(data: bytes, transpose_copy: bool = False) -> tuple[Image.Image, int]:
    """Decode uploaded bytes into a loaded PIL image and its EXIF orientation (not yet applied).

    Call with Pillow's warnings silenced. ``transpose_copy`` adds a full-size copy for setting the
    image upright to the memory estimate.
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
    claimed = _allowed_format(data)
    layout = _scan(claimed, data)
    if layout.size is not None and layout.size[0] * layout.size[1] > MAX_PIXELS:
        raise _too_many_pixels(f"is {layout.size[0]}×{layout.size[1]} pixels, more than")
    reader = _DeadlineReader(data, DECODE_CPU_SECONDS)
    try:
        image = Image.open(reader, formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as error:
        raise _too_many_pixels() from error
    except _DecodeTimeout as error:
        raise _too_slow() from error
    except _DECODE_ERRORS as error:
        if reader.expired:
            raise _too_slow() from error
        raise _unsupported(data) from error
    if image.format not in ALLOWED_FORMATS:
        raise _unsupported(data)
    kind = _format_name(image.format)
    _check_dimensions(*image.size)
    try:
        if image.format in ("JPEG", "MPO"):
            image.draft(None, (WORK_MAX_SIDE, WORK_MAX_SIDE))
        orientation = _exif_orientation(image.info)
        copies = 2 if transpose_copy and orientation != 1 else 1
        _check_memory(
            _estimate(image.size, image.mode, layout.decoder_bytes, layout.extra_per_pixel, copies)
        )
        image.load()
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as error:
        raise _too_many_pixels() from error
    except _DecodeTimeout as error:
        raise _too_slow() from error
    except _DECODE_ERRORS as error:
        if reader.expired:
            raise _too_slow() from error
        raise _damaged(kind) from error
    if reader.expired:
        raise _too_slow()
    # EXIF may follow the pixels (a PNG eXIf chunk after IDAT).
    return image, _exif_orientation(image.info) if orientation == 1 else orientation


def decode_image(data: bytes) -> Image.Image:
    """Decode uploaded bytes into a loaded, upright PIL image, or raise :class:`InvalidImageError`.

    Only PNG, JPEG/MPO, BMP, WebP and GIF are opened (never Pillow's other plugins, such as EPS,
    which would run Ghostscript). Size, pixel, memory and time limits are enforced; GIFs and MPOs
    give their first frame; large JPEGs are decoded at a reduced scale.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, orientation = _decode(data, transpose_copy=True)
        if orientation in _TRANSPOSES:
            image = image.transpose(_TRANSPOSES[orientation])
    return image


# --------------------------------------------------------------------------- to an array


def scale_to_unit(values: np.ndarray) -> np.ndarray:
    """Scale numbers of unknown range into [0, 1] float32.

    Integers are read as 8-bit or 16-bit when they fit, floats as [0, 1] when they fit (or as
    8-bit when they are whole numbers up to 255); anything else is scaled by its own min-max.
    Non-finite values count as 0.
    """
    if values.dtype == np.uint8:
        return values.astype(np.float32) * np.float32(1 / 255)
    if values.dtype == np.uint16 or values.dtype == np.dtype(">u2"):
        return values.astype(np.float32) * np.float32(1 / 65535)
    if values.dtype == bool:
        return values.astype(np.float32)
    with np.errstate(all="ignore"):
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
            # Halved first, so the span of values near ±1.8e308 does not overflow to inf.
            scaled = (work * 0.5 - low * 0.5) / (high * 0.5 - low * 0.5)
        else:
            scaled = np.zeros_like(work)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _sanitise_transparency(image: Image.Image) -> None:
    """Cut a palette image's per-entry alpha to 256 entries (Pillow refuses longer tables).

    The PNG specification allows at most one tRNS entry per palette entry; libpng ignores the
    excess too.
    """
    transparency = image.info.get("transparency")
    if image.mode in ("P", "PA") and isinstance(transparency, bytes) and len(transparency) > 256:
        image.info["transparency"] = transparency[:256]


def _convert(image: Image.Image) -> Image.Image:
    """Pixels in a mode ink extraction understands: L, LA, RGB, RGBA or 16/32-bit/float."""
    mode = image.mode
    try:
        if mode == "1":
            return image.convert("L")
        if mode == "La":
            return image.convert("LA")
        if mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in image.info
            return image.convert("RGBA" if has_alpha else "RGB")
        if mode == "RGBa":
            return image.convert("RGBA")
    except (ValueError, TypeError, IndexError, OSError) as error:
        raise _damaged("image") from error
    if mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        try:
            return image.convert("RGB")
        except ValueError as error:
            raise InvalidImageError(
                f"Images in the {mode} colour mode are not supported. "
                "Please save the image as an RGB or grayscale PNG or JPEG."
            ) from error
    return image


def _tile_shape(width: int, height: int, factor: int) -> tuple[int, int]:
    """Tile width and height (multiples of ``factor``) that keep a tile within _TILE_BYTES."""
    block_rows = min(factor, height)
    columns = math.ceil(width / factor)
    while (
        columns > 1
        and block_rows * (3 * _ROW_BYTES + min(width, columns * factor) * _TILE_BYTES_PER_PIXEL)
        > _TILE_BYTES
    ):
        columns = math.ceil(columns / 2)
    tile_width = min(width, columns * factor)
    per_block_row = block_rows * (3 * _ROW_BYTES + tile_width * _TILE_BYTES_PER_PIXEL)
    tile_height = min(height, max(1, _TILE_BYTES // per_block_row) * factor)
    return tile_width, tile_height


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """The image as an array in an understood mode, box-reduced to :data:`WORK_MAX_SIDE`.

    Images within the working size are converted whole. Larger ones are converted and reduced
    tile by tile (tiles of whole reduction blocks), so no full-size converted copy ever exists:
    a 40-megapixel palette image never becomes 160 MB of RGBA.
    """
    _sanitise_transparency(image)
    sixteen_bit = image.mode.startswith("I;16")
    width, height = image.size
    factor = math.ceil(max(width, height) / WORK_MAX_SIDE)
    if factor <= 1:
        array = np.asarray(_convert(image))
        return array.astype(np.uint16) if sixteen_bit else array
    tile_width, tile_height = _tile_shape(width, height, factor)
    out: np.ndarray | None = None
    for top in range(0, height, tile_height):
        for left in range(0, width, tile_width):
            tile = image.crop(
                (left, top, min(width, left + tile_width), min(height, top + tile_height))
            )
            tile = tile.convert("I") if sixteen_bit else _convert(tile)
            reduced = np.asarray(tile.reduce(factor))
            if out is None:
                shape = (math.ceil(height / factor), math.ceil(width / factor), *reduced.shape[2:])
                out = np.empty(shape, reduced.dtype)
            row, column = top // factor, left // factor
            out[row : row + reduced.shape[0], column : column + reduced.shape[1]] = reduced
    assert out is not None
    return out.astype(np.uint16) if sixteen_bit else out


def _reduce_large_array(array: np.ndarray) -> np.ndarray:
    """Block-mean arrays whose longer side exceeds :data:`WORK_MAX_SIDE`, keeping their dtype.

    Partial blocks at the bottom and right edges are averaged over the pixels they have, so no
    side is ever reduced to zero (a 1×2000 array becomes 1×1000, not 0×1000).
    """
    factor = math.ceil(max(array.shape[:2]) / WORK_MAX_SIDE)
    if factor <= 1:
        return array
    height, width = array.shape[:2]
    rows, columns = np.arange(0, height, factor), np.arange(0, width, factor)
    with np.errstate(all="ignore"):
        sums = np.add.reduceat(array, rows, axis=0, dtype=np.float64)
        sums = np.add.reduceat(sums, columns, axis=1, dtype=np.float64)
        counts = np.outer(np.diff(rows, append=height), np.diff(columns, append=width))
        reduced = sums / counts.reshape(counts.shape + (1,) * (array.ndim - 2))
        if np.issubdtype(array.dtype, np.integer):
            info = np.iinfo(array.dtype)
            reduced = np.clip(np.rint(reduced), info.min, info.max)
        return reduced.astype(array.dtype)


def to_array(source: bytes | bytearray | memoryview | Image.Image | np.ndarray) -> np.ndarray:
    """Untrusted bytes, a PIL image or an array as a checked array, or :class:`InvalidImageError`.

    Bytes go through the same checks as :func:`decode_image`; PIL images are size-checked,
    loaded and converted to L, LA, RGB, RGBA or 16/32-bit/float pixels; both are set upright by
    their EXIF orientation after being reduced. Arrays must be non-empty ``[H, W]`` or
    ``[H, W, C]`` real numbers. Anything larger than :data:`WORK_MAX_SIDE` is box-reduced.
    Other types raise ``TypeError``.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image, orientation = _decode(bytes(source))
            array = _pil_to_array(image)
        del image
        return _orient_array(array, orientation)
    if isinstance(source, Image.Image):
        _check_dimensions(*source.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                source.load()
            except _DECODE_ERRORS as error:
                raise InvalidImageError(
                    "The image is damaged or truncated and cannot be read. "
                    "Please upload the complete image again."
                ) from error
            orientation = _exif_orientation(source.info)
            array = _pil_to_array(source)
        return _orient_array(array, orientation)
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
