"""core.robustness: shifted and rotated digits, seeded, and accuracy per condition."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.inputs import MNIST_NORMALIZATION
from core.robustness import SHIFTS, robustness_curves, rotated, shifted


def digits() -> np.ndarray:
    images = np.zeros((16, 28, 28), np.uint8)
    images[:, 10:18, 12:16] = 255
    return images


def test_shift_moves_every_digit_by_exactly_n_pixels_and_keeps_its_ink() -> None:
    images = digits()
    for pixels in SHIFTS:
        moved = shifted(images, pixels, seed=0)
        assert moved.shape == images.shape and moved.dtype == np.uint8
        assert (moved.sum((1, 2)) == images.sum((1, 2))).all()  # 6 px keeps this box inside
        for after in moved:
            rows = np.flatnonzero(after.any(1))
            cols = np.flatnonzero(after.any(0))
            dy, dx = rows[0] - 10, cols[0] - 12
            assert max(abs(dy), abs(dx)) == pixels and {abs(dy), abs(dx)} <= {0, pixels}
    np.testing.assert_array_equal(shifted(images, 3, seed=1), shifted(images, 3, seed=1))


def test_rotation_is_identity_at_zero_and_keeps_most_ink() -> None:
    images = digits()
    np.testing.assert_array_equal(rotated(images, 0), images)
    turned = rotated(images, 30, seed=0)
    assert not np.array_equal(turned, images)
    assert abs(int(turned.astype(int).sum()) - int(images.astype(int).sum())) < 0.1 * images.sum()


class Blind(nn.Module):
    """Always says 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10)
        logits[:, 3] = 1.0
        return logits


def test_curves_report_accuracy_per_condition() -> None:
    images = digits()
    labels = np.array([3] * 8 + [5] * 8)
    curves = robustness_curves(Blind(), MNIST_NORMALIZATION, images, labels, (images, labels))
    assert set(curves) == {"shift", "rotation", "canvas"}
    assert all(value == 0.5 for value in curves["shift"].values())
    assert curves["canvas"] == 0.5 and list(curves["rotation"]) == [
        "0",
        "5",
        "10",
        "15",
        "20",
        "25",
        "30",
    ]
