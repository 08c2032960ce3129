"""Sanity check for attribution maps: cascading model-parameter randomisation (Adebayo et al. 2018).

A map that explains the *model* must change when the model's learned weights are destroyed. Starting
from a copy of the trained model, the layers are re-initialised one at a time from the output layer
down to the first conv layer (cascading: earlier randomisations are kept), and after each step the
map is recomputed and compared with the original by Spearman rank correlation. A method that
depends on the weights falls towards 0; an edge detector in disguise stays near 1.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from core.explain import attribute, model_lock

AttributionFn = Callable[[nn.Module, torch.Tensor, int], np.ndarray]


@dataclass(frozen=True)
class SanityStep:
    """One step: ``layer`` is the layer randomised last (all layers above it are random too).

    ``spearman`` compares ``attribution`` with the trained model's map (1.0 for ``"original"``).
    """

    layer: str
    attribution: np.ndarray
    spearman: float


def randomization_order(model: nn.Module) -> list[str]:
    """Layers with learned weights (conv and linear), from the output layer to the input layer."""
    return [
        name for name, module in model.named_modules() if isinstance(module, nn.Conv2d | nn.Linear)
    ][::-1]


def randomize_layer(model: nn.Module, name: str, generator: torch.Generator) -> None:
    """Re-initialise layer ``name`` in place as PyTorch would at construction, from ``generator``.

    A conv layer's BatchNorm sibling (``...bn``) is reset too (identity transform, fresh running
    statistics), so no learned scale of that block survives.
    """
    modules = dict(model.named_modules())
    layer = modules[name]
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        if getattr(layer, "bias", None) is not None:
            fan_in = layer.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    batch_norm = modules.get(f"{name.rpartition('.')[0]}.bn")
    if isinstance(batch_norm, nn.BatchNorm2d):
        batch_norm.reset_parameters()


def rank_correlation(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> float:
    """Spearman rank correlation of two maps (of ``|map|`` when ``absolute``).

    A constant map has no ranking: two identical constant maps count as 1.0, otherwise 0.0.
    """
    x = np.abs(a).ravel() if absolute else np.asarray(a).ravel()
    y = np.abs(b).ravel() if absolute else np.asarray(b).ravel()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 1.0 if np.array_equal(x, y) else 0.0
    return float(spearmanr(x, y).statistic)


def cascading_randomization(
    model: nn.Module,
    x: torch.Tensor,
    method: str | AttributionFn,
    target: int,
    *,
    layer: str | None = None,
    normalization: dict[str, float] | None = None,
    seed: int = 0,
    absolute: bool = True,
) -> list[SanityStep]:
    """The original map, then one map per layer randomised cumulatively from the top.

    ``method`` is a key of ``core.methods.METHODS`` (``layer`` and ``normalization``
    as for ``core.explain.attribute``) or any callable ``(model, x, target) -> map``. The given
    model is never changed: the work happens on a deep copy, taken under the model's lock.
    Spearman is computed on absolute values by default, as importance rankings.
    """
    with model_lock(model):
        working = copy.deepcopy(model)
    working.eval()

    def explain(m: nn.Module) -> np.ndarray:
        if callable(method):
            return np.asarray(method(m, x, target), dtype=np.float32)
        return attribute(m, x, method, target, layer=layer, normalization=normalization)

    original = explain(working)
    steps = [SanityStep("original", original, 1.0)]
    generator = torch.Generator().manual_seed(seed)
    for name in randomization_order(working):
        randomize_layer(working, name, generator)
        attribution = explain(working)
        steps.append(
            SanityStep(name, attribution, rank_correlation(original, attribution, absolute))
        )
    return steps
