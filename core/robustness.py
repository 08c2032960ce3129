"""What convolution buys: accuracy of every model on shifted, rotated and canvas-drawn test digits.

Each MNIST test digit is moved by ``s`` pixels in one of the eight compass directions (chosen per
digit by a seeded generator, the same for every model) or rotated by ``a`` degrees (sign chosen per
digit), with black filling what moves in. A model that sees 784 unrelated pixels (``logreg``,
``mlp``) has to relearn a digit at every position; a CNN's shared kernels and pooling carry it
along, which these curves show with numbers. The result is a small JSON file written by
``scripts/robustness.py`` (deterministic), read by the Compare page and the README.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.inputs import to_input

SHIFTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
ROTATIONS: tuple[int, ...] = (0, 5, 10, 15, 20, 25, 30)
BATCH = 1000
DIRECTIONS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def shifted(images: np.ndarray, pixels: int, seed: int = 0) -> np.ndarray:
    """uint8 digits ``[N, 28, 28]`` each moved ``pixels`` in its own compass direction."""
    rng = np.random.default_rng([seed, 1])
    directions = DIRECTIONS[rng.integers(len(DIRECTIONS), size=len(images))]
    out = np.zeros_like(images)
    for (dy, dx), group in _groups(directions):
        moved = np.roll(images[group], (dy * pixels, dx * pixels), axis=(1, 2))
        if dy * pixels > 0:
            moved[:, : dy * pixels] = 0
        elif dy * pixels < 0:
            moved[:, dy * pixels :] = 0
        if dx * pixels > 0:
            moved[:, :, : dx * pixels] = 0
        elif dx * pixels < 0:
            moved[:, :, dx * pixels :] = 0
        out[group] = moved
    return out


def _groups(directions: np.ndarray):
    for direction in np.unique(directions, axis=0):
        yield tuple(int(v) for v in direction), np.flatnonzero((directions == direction).all(1))


def rotated(images: np.ndarray, degrees: float, seed: int = 0) -> np.ndarray:
    """uint8 digits rotated by ``degrees`` about the centre, clockwise or not per digit."""
    if degrees == 0:
        return images.copy()
    rng = np.random.default_rng([seed, 2])
    signs = rng.choice([-1.0, 1.0], size=len(images))
    angles = torch.from_numpy(np.radians(degrees) * signs).float()
    cos, sin = torch.cos(angles), torch.sin(angles)
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    x = torch.from_numpy(images).float().unsqueeze(1) / 255.0
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return np.round(out[:, 0].clamp(0, 1).numpy() * 255).astype(np.uint8)


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, norm: dict) -> float:
    """Share of ``images`` the model reads as ``labels`` (channels-last batches: about 1.5x
    faster convolutions on this CPU; the predicted digits are the same)."""
    x = to_input(torch.from_numpy(np.ascontiguousarray(images)), norm)
    predicted = [
        model(x[start : start + BATCH].contiguous(memory_format=torch.channels_last)).argmax(1)
        for start in range(0, len(x), BATCH)
    ]
    return float((torch.cat(predicted).numpy() == labels).mean()) if predicted else 0.0


def robustness_curves(
    model: nn.Module,
    normalization: dict,
    images: np.ndarray,
    labels: np.ndarray,
    canvas: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> dict:
    """Accuracy at every shift and rotation (and on canvas-style digits), JSON-ready."""
    model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    clean = accuracy(model, images, labels, normalization)  # shift 0 and rotation 0
    result = {
        "shift": {
            str(s): clean
            if s == 0
            else accuracy(model, shifted(images, s, seed), labels, normalization)
            for s in SHIFTS
        },
        "rotation": {
            str(a): clean
            if a == 0
            else accuracy(model, rotated(images, a, seed), labels, normalization)
            for a in ROTATIONS
        },
    }
    if canvas is not None:
        result["canvas"] = accuracy(model, canvas[0], canvas[1], normalization)
    return result
