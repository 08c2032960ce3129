"""Input conventions every model shares: the 28×28 frame, normalisation and the black baseline.

Images live in [0, 1], white ink on black, as MNIST. A model sees them *normalised*:
``(x - mean) / std`` with the mean and std of its own training set (stored in its checkpoint).
In normalised space 0 is mid-grey, not black: the black background is ``(0 - mean) / std``
(:func:`black_baseline`), the value attributions and perturbations must use for "no ink".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

IMAGE_SIDE = 28
MNIST_NORMALIZATION: dict[str, float] = {"mean": 0.1307, "std": 0.3081}
# Images in [0, 1] have a mean in [0, 1] and a std of at most 0.5; 1.0 also admits the identity
# (mean 0, std 1). A std below MIN_STD would blow pixel differences up by more than 100×.
MIN_STD = 0.01
MAX_STD = 1.0


def check_normalization(normalization: Mapping[str, float] | None) -> tuple[float, float]:
    """``(mean, std)`` of a normalisation (MNIST's when None), or ``ValueError`` if unusable.

    Usable means: both finite numbers, ``0 <= mean <= 1`` and ``MIN_STD <= std <= MAX_STD``,
    which every set of images in [0, 1] with some contrast satisfies.
    """
    norm = MNIST_NORMALIZATION if normalization is None else normalization
    try:
        mean, std = float(norm["mean"]), float(norm["std"])
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"Invalid normalization {norm!r}: needs numbers mean and std.") from error
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(f"Invalid normalization {dict(norm)!r}: mean and std must be finite.")
    if not 0.0 <= mean <= 1.0 or not MIN_STD <= std <= MAX_STD:
        raise ValueError(
            f"Invalid normalization {dict(norm)!r}: images in [0, 1] need 0 <= mean <= 1 and "
            f"{MIN_STD} <= std <= {MAX_STD}."
        )
    return mean, std


def to_input(images: torch.Tensor, normalization: Mapping[str, float]) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` or float ``[N, (1,) 28, 28]`` in [0, 1] → normalised ``[N, 1, 28, 28]``."""
    mean, std = float(normalization["mean"]), float(normalization["std"])
    if images.dtype == torch.uint8:
        images = images.float().div(255.0)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images - mean) / std


def image_to_input(
    image: np.ndarray, normalization: Mapping[str, float] | None = None
) -> torch.Tensor:
    """One 28×28 image in [0, 1] as the normalised ``[1, 1, 28, 28]`` tensor a model takes."""
    mean, std = check_normalization(normalization)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).clone()
    return tensor.sub_(mean).div_(std).view(1, 1, IMAGE_SIDE, IMAGE_SIDE)


def black_baseline(normalization: Mapping[str, float] | None = None) -> float:
    """The value of a black pixel in normalised space: ``(0 - mean) / std`` (0 is mid-grey)."""
    mean, std = check_normalization(normalization)
    return (0.0 - mean) / std
