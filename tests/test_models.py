"""Model variants: output shapes, parameter counts, named conv layers, one activation module per use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.models import (
    REGISTRY,
    VARIANTS,
    block_activations,
    build_model,
    conv_layers,
    count_parameters,
    layer_summary,
)

# Exact counts pin the architectures: a change here must be a deliberate one (retrain + new cards).
EXPECTED_PARAMS = {
    "cnn1": 1_207_210,
    "cnn2": 623_146,
    "cnn3": 390_634,
    "logreg": 7_850,
    "mlp": 535_818,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_shape_for_any_batch(variant: str) -> None:
    model = build_model(variant).eval()
    for n in (1, 7):
        assert model(torch.randn(n, 1, 28, 28)).shape == (n, 10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_and_size_limit(variant: str) -> None:
    params = count_parameters(build_model(variant))
    assert params == EXPECTED_PARAMS[variant]
    assert params * 4 < 5 * 1024 * 1024, "weights file must stay under 5 MB"


@pytest.mark.parametrize("variant", VARIANTS)
def test_conv_layers_are_named_blocks(variant: str) -> None:
    model = build_model(variant)
    depth = REGISTRY[variant].conv_blocks
    assert list(conv_layers(model)) == [f"features.block{i}.conv" for i in range(1, depth + 1)]
    assert list(block_activations(model)) == [f"features.block{i}.act" for i in range(1, depth + 1)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_leaky_relu_is_its_own_non_inplace_module(variant: str) -> None:
    acts = [m for m in build_model(variant).modules() if isinstance(m, nn.LeakyReLU)]
    config = REGISTRY[variant].config
    hidden = len(getattr(config, "hidden", ())) if REGISTRY[variant].conv_blocks == 0 else 1
    assert len(acts) == REGISTRY[variant].conv_blocks + hidden
    assert len({id(m) for m in acts}) == len(acts)
    assert not any(m.inplace for m in acts)
    assert not any(isinstance(m, nn.ReLU) for m in build_model(variant).modules())


def test_last_map_of_cnn3_is_3x3() -> None:
    rows = {row["layer"]: row for row in layer_summary(build_model("cnn3"))}
    assert rows["features.block3.act"]["output_shape"] == [128, 7, 7]
    assert rows["features.block3.pool"]["output_shape"] == [128, 3, 3]
    assert sum(row["params"] for row in rows.values()) == EXPECTED_PARAMS["cnn3"]


def test_baselines_have_no_conv_layers_and_the_cnns_pad_with_the_border() -> None:
    assert REGISTRY["logreg"].conv_blocks == REGISTRY["mlp"].conv_blocks == 0
    assert not conv_layers(build_model("mlp"))
    for variant in ("cnn1", "cnn2", "cnn3"):
        assert all(
            c.padding_mode == "replicate" for c in conv_layers(build_model(variant)).values()
        )


def test_replicate_padding_sees_no_edge_at_a_black_border() -> None:
    """A uniform black image gives a uniform first-layer map: the border is not an edge."""
    model = build_model("cnn3").eval()
    black = torch.full((1, 1, 28, 28), -0.4242)
    with torch.no_grad():
        maps = model.features.block1.conv(black)
    assert torch.allclose(maps, maps[:, :, 14:15, 14:15].expand_as(maps), atol=1e-6)


def test_unknown_variant_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cnn1, cnn2, cnn3"):
        build_model("cnn9")
