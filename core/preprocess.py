"""From a canvas, an upload or a photo to MNIST's format: white ink on black, 20 px fit, 28×28.

MNIST's recipe (LeCun et al.): the ink's bounding box is resized so its longer side is 20 px
(keeping the aspect ratio, anti-aliased), then placed in a 28×28 frame so that its centre of mass
sits at the frame's centre. Everything before that turns real input into clean ink:

* decoding is limited to an allowlist of formats, a byte limit, a pixel limit and a memory
  budget read from the header before any pixel is decoded, and a CPU-time budget, so hostile files
  fail fast with :class:`InvalidImageError` (see :mod:`core.decode`);
* a canvas with a transparent background keeps its ink in the alpha channel (a naive grayscale
  conversion would be blank), whatever the stroke colour;
* the background is read from the image's border (a bold digit may cover most of the area);
* opaque images are auto-inverted when the ink is darker than the background, and photos get a
  tile-based background estimate (uneven lighting) and a noise floor (paper texture);
* specks far smaller than the digit are dropped so they cannot stretch the bounding box;
* stroke width is brought into MNIST's range relative to the digit's size (canvas strokes are
  far thicker than MNIST's pen, photographed pen strokes far thinner);
* blank or near-blank input is flagged ``blank`` instead of being predicted.

This module is the pipeline only; the steps live in :mod:`core.decode` (the security boundary
for untrusted input), :mod:`core.ink` (ink extraction) and :mod:`core.strokes` (stroke width,
fit and centring), and normalisation in :mod:`core.inputs`. The names other code imports from
here (:class:`InvalidImageError`, the limits, :func:`decode_image`) are re-exported.

Everything is NumPy/SciPy/Pillow on whole arrays: a 280×280 canvas takes a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.decode import (
    ALLOWED_FORMATS,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    SUPPORTED_FORMATS_TEXT,
    InvalidImageError,
    decode_image,
    to_array,
)
from core.ink import (
    INK_THRESHOLD,
    MIN_EXTENT_FRACTION,
    MIN_EXTENT_PIXELS,
    drop_specks,
    extract_ink,
    planes,
)
from core.inputs import check_normalization, image_to_input
from core.strokes import FIT_SIZE, FRAME_SIZE, bounding_box, centre, fit, normalise_strokes

__all__ = [
    "ALLOWED_FORMATS",
    "BLANK_MESSAGE",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "NORMALISE_STROKES",
    "SUPPORTED_FORMATS_TEXT",
    "InvalidImageError",
    "PreprocessResult",
    "decode_image",
    "preprocess",
]

BLANK_MESSAGE = "The image is blank: draw or upload a digit."
# Whether strokes are brought into MNIST's width range (:func:`core.strokes.normalise_strokes`).
NORMALISE_STROKES = True


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
        return image_to_input(self.image, normalization)


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
    return PreprocessResult(empty, image_to_input(empty, normalization), True, stages)


def preprocess(
    source: bytes | bytearray | memoryview | Image.Image | np.ndarray | None,
    normalization: Mapping[str, float] | None = None,
) -> PreprocessResult:
    """Turn raw bytes, a PIL image or an image array into MNIST's format.

    Arrays may be a drawing's RGBA pixels (uint8 ``[H, W, 4]``, ink in alpha
    when the background is transparent), ``[H, W]`` or ``[H, W, 3]``; uint8, uint16, bool and
    float arrays are understood. ``None`` (a canvas before its first stroke) and blank or
    near-blank images give a ``blank`` result; unreadable input raises
    :class:`InvalidImageError`. ``normalization`` defaults to MNIST's mean and std; an unusable
    one (see :func:`core.inputs.check_normalization`) raises ``ValueError``.
    """
    check_normalization(
        normalization
    )  # a bad normalisation is the caller's bug: fail before any work
    if source is None:
        return _blank_result(np.zeros((FRAME_SIZE, FRAME_SIZE), np.uint8), None, normalization)
    ink, display, clean = extract_ink(planes(to_array(source)))
    if ink is None:
        return _blank_result(display, None, normalization)
    ink, largest = drop_specks(ink, clean)
    box = bounding_box(ink > INK_THRESHOLD / 2)
    if box is None or largest < max(MIN_EXTENT_PIXELS, MIN_EXTENT_FRACTION * max(ink.shape)):
        return _blank_result(display, ink, normalization)
    top, bottom, left, right = box
    cropped = ink[top:bottom, left:right]
    fitted = fit(normalise_strokes(cropped) if NORMALISE_STROKES else cropped)
    centred = centre(fitted)
    if not centred.any():
        return _blank_result(display, ink, normalization)
    stages = {
        "decoded": display,
        "ink": ink,
        "cropped": cropped,
        "fitted": fitted,
        "centred": centred,
    }
    return PreprocessResult(centred, image_to_input(centred, normalization), False, stages)
