"""core.faithfulness: deletion/insertion curves, ROAD imputation, baselines and the ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.faithfulness import (
    BASELINE_MAPS,
    edge_map,
    faithfulness,
    faithfulness_score,
    most_faithful,
    noisy_linear_impute,
    random_map,
    relevance_order,
)
from core.inputs import MNIST_NORMALIZATION


class PixelReader(nn.Module):
    """A toy model whose class-1 logit is the sum of a few fixed pixels (in [0, 1] units)."""

    def __init__(self, pixels: list[int]) -> None:
        super().__init__()
        self.pixels = pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = x.flatten(1) * MNIST_NORMALIZATION["std"] + MNIST_NORMALIZATION["mean"]
        evidence = unit[:, self.pixels].sum(1)
        return torch.stack([torch.zeros_like(evidence), 1.5 * evidence - 6.0], dim=1)


@pytest.fixture
def toy() -> tuple[PixelReader, np.ndarray, np.ndarray]:
    pixels = [300, 301, 330, 331, 400, 401]
    image = np.zeros((28, 28), np.float32)
    image.flat[pixels] = 1.0
    image.flat[[100, 101, 600]] = 1.0  # ink the model ignores
    truth = np.zeros((28, 28), np.float32)
    truth.flat[pixels] = 1.0
    return PixelReader(pixels).eval(), image, truth


def test_the_true_map_beats_a_random_map_on_both_curves(toy) -> None:
    model, image, truth = toy
    scores = faithfulness(
        model, image, 1, {"truth": truth, "random": random_map()}, MNIST_NORMALIZATION, steps=28
    )
    true, rand = scores["truth"], scores["random"]
    assert true.deletion_curve[0] == pytest.approx(rand.deletion_curve[0])  # same start
    assert true.deletion_auc < rand.deletion_auc - 0.15
    assert true.insertion_auc > rand.insertion_auc + 0.15
    assert true.deletion_curve[-1] == pytest.approx(true.insertion_curve[0])  # all black
    assert true.insertion_curve[-1] == pytest.approx(true.deletion_curve[0])  # all restored
    assert len(true.deletion_curve) == 29 and true.road is None


def test_road_ranks_the_true_map_above_random_and_is_deterministic(toy) -> None:
    model, image, truth = toy
    maps = {"truth": truth, "random": random_map()}
    first = faithfulness(model, image, 1, maps, MNIST_NORMALIZATION, road=True)
    again = faithfulness(model, image, 1, maps, MNIST_NORMALIZATION, road=True)
    assert first["truth"].road > first["random"].road
    assert first["truth"].road == again["truth"].road


def test_noisy_linear_imputation_fills_from_neighbours() -> None:
    image = np.full((28, 28), 0.5)
    removed = np.zeros((28, 28), bool)
    removed[10:14, 10:14] = True
    filled = noisy_linear_impute(image, removed, np.random.default_rng(0), noise=0.0)
    np.testing.assert_allclose(filled, 0.5, atol=1e-9)  # a flat image stays flat
    ramp = np.tile(np.linspace(0, 1, 28), (28, 1))
    filled = noisy_linear_impute(ramp, removed, np.random.default_rng(0), noise=0.0)
    np.testing.assert_allclose(filled[removed], ramp[removed], atol=1e-6)  # linear is exact
    np.testing.assert_array_equal(filled[~removed], ramp[~removed])


def test_relevance_order_ranks_largest_first_and_refuses_nan() -> None:
    values = np.zeros((28, 28))
    values.flat[5], values.flat[700] = 2.0, 1.0
    order = relevance_order(values)
    assert list(order[:2]) == [5, 700] and sorted(order) == list(range(784))
    with pytest.raises(ValueError, match="NaN"):
        relevance_order(np.full((28, 28), np.nan))


def test_baselines_random_is_seeded_edges_follow_the_ink() -> None:
    np.testing.assert_array_equal(random_map(3), random_map(3))
    assert not np.array_equal(random_map(3), random_map(4))
    image = np.zeros((28, 28))
    image[10:18, 10:18] = 1.0
    edges = edge_map(image)
    assert edges[10, 14] > 0 and edges[14, 14] == 0 and edges[2, 2] == 0
    assert set(BASELINE_MAPS) == {"random", "edges"}


def test_most_faithful_skips_baselines_and_failing_methods() -> None:
    table = {
        "random": {"deletion_auc": 0.0, "insertion_auc": 1.0},
        "saliency": {"deletion_auc": 0.1, "insertion_auc": 0.9, "sanity_passed": False},
        "gradcam@features.block3.conv": {
            "deletion_auc": 0.2,
            "insertion_auc": 0.8,
            "sanity_passed": True,
        },
        "occlusion": {"deletion_auc": 0.3, "insertion_auc": 0.8, "sanity_passed": True},
    }
    assert faithfulness_score(table["occlusion"]) == pytest.approx(0.5)
    assert most_faithful(table) == "gradcam"
    assert most_faithful({"random": table["random"]}) is None
