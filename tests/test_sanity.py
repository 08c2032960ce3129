"""core.sanity: cascading randomisation (Adebayo et al. 2018) separates real from broken methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_helpers import NORMALIZATION, digit_input, one_torch_thread, seeded_model

from core.methods import METHODS
from core.sanity import (
    RHO_PASS,
    SanityStep,
    cascading_randomization,
    map_entropy,
    randomization_order,
    randomize_layer,
    rank_correlation,
    sanity_verdict,
)

CNN3_ORDER = [
    "head.fc2",
    "head.fc1",
    "features.block3.conv",
    "features.block2.conv",
    "features.block1.conv",
]


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    with one_torch_thread():
        yield


def input_copy(_model, x: torch.Tensor, _target: int) -> np.ndarray:
    """A deliberately broken "explanation" that ignores the model: the input image itself."""
    return x[0, 0].numpy().copy()


@pytest.fixture(scope="module")
def model():
    return seeded_model("cnn3")


def test_randomization_order_is_output_to_input(model):
    assert randomization_order(model) == CNN3_ORDER
    assert randomization_order(seeded_model("cnn1")) == [
        "head.fc2",
        "head.fc1",
        "features.block1.conv",
    ]


@pytest.mark.parametrize("method", list(METHODS))
def test_maps_change_when_weights_are_randomised(model, method):
    layer = "features.block3.conv" if method == "gradcam" else None
    steps = cascading_randomization(
        model, digit_input(), method, 7, layer=layer, normalization=NORMALIZATION
    )
    assert [s.layer for s in steps] == ["original", *CNN3_ORDER]
    assert all(isinstance(s, SanityStep) and s.attribution.shape == (28, 28) for s in steps)
    assert steps[0].spearman == 1.0
    original = steps[0].attribution
    for step in steps[1:]:
        assert not np.allclose(step.attribution, original), step.layer
        assert -1.0 <= step.spearman < 0.95, (step.layer, step.spearman)
    if method in ("gradcam", "saliency"):
        assert steps[-1].spearman < 0.6


def test_broken_method_does_not_change(model):
    steps = cascading_randomization(model, digit_input(), input_copy, 7)
    assert [s.layer for s in steps] == ["original", *CNN3_ORDER]
    for step in steps:
        np.testing.assert_array_equal(step.attribution, steps[0].attribution)
        assert step.spearman == pytest.approx(1.0)


def test_given_model_is_never_mutated(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cascading_randomization(model, digit_input(), "saliency", 3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_seeded_and_reproducible(model):
    x = digit_input("zero")
    a = cascading_randomization(model, x, "saliency", 0, seed=1)
    b = cascading_randomization(model, x, "saliency", 0, seed=1)
    c = cascading_randomization(model, x, "saliency", 0, seed=2)
    for sa, sb in zip(a, b, strict=True):
        np.testing.assert_array_equal(sa.attribution, sb.attribution)
    assert not np.allclose(a[-1].attribution, c[-1].attribution)


def test_randomize_layer_resets_weights_and_batchnorm():
    model = seeded_model("cnn2")
    conv_before = model.features.block2.conv.weight.clone()
    other_before = model.features.block1.conv.weight.clone()
    randomize_layer(model, "features.block2.conv", torch.Generator().manual_seed(0))
    assert not torch.equal(model.features.block2.conv.weight, conv_before)
    assert torch.equal(model.features.block1.conv.weight, other_before)
    bn = model.features.block2.bn
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    bound = 1 / np.sqrt(model.features.block2.conv.weight[0].numel())
    assert model.features.block2.conv.weight.abs().max() <= bound + 1e-6


def test_rank_correlation_hand_examples():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(a, a * 10) == pytest.approx(1.0)
    assert rank_correlation(a, -a, absolute=False) == pytest.approx(-1.0)
    assert rank_correlation(a, -a) == pytest.approx(1.0)
    assert rank_correlation(a, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    assert rank_correlation(np.zeros(4), np.zeros(4)) == 1.0
    assert rank_correlation(np.zeros(4), a) == 0.0


def _steps(final_map: np.ndarray, rho: float) -> list[SanityStep]:
    trained = np.zeros((28, 28), np.float32)
    trained[10:18, 12:16] = 1.0
    return [SanityStep("original", trained, 1.0), SanityStep("head.fc2", final_map, rho)]


def test_verdict_passes_below_the_stated_rho_and_fails_above() -> None:
    noisy = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    passed = sanity_verdict(_steps(noisy, 0.1))
    assert passed.passed and passed.final_rho == pytest.approx(0.1)
    assert passed.complexity_ratio > 1  # a random map is less structured than the trained one
    assert "depends on the learned weights" in passed.reason
    failed = sanity_verdict(_steps(_steps(noisy, 0)[0].attribution, 0.93))
    assert not failed.passed and "+0.93" in failed.reason
    assert failed.complexity_ratio == pytest.approx(1.0)
    assert RHO_PASS == 0.5
    with pytest.raises(ValueError):
        sanity_verdict(_steps(noisy, 0.1)[:1])


def test_map_entropy_is_zero_for_one_pixel_and_largest_for_a_flat_map() -> None:
    one = np.zeros((28, 28))
    one[3, 3] = 5.0
    assert map_entropy(one) == 0.0
    assert map_entropy(np.ones((28, 28))) == pytest.approx(np.log(784))
    assert map_entropy(np.zeros((28, 28))) == 0.0
