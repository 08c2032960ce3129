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


# A map still rank-correlated above this with the trained model's map after *every* layer was
# randomised explains the input, not the model (Adebayo et al. 2018 call such methods "edge
# detectors"); below it, the method depends on what the model learned.
RHO_PASS = 0.5


@dataclass(frozen=True)
class SanityVerdict:
    """Pass or fail of the cascading randomisation check, with the figures behind it.

    ``final_rho``: Spearman ρ (absolute maps) between the trained model's map and the map with
    every layer randomised; ``complexity_ratio``: entropy of the fully randomised map over the
    trained one's (Hedström et al. 2024, eMPRT: a faithful method's map becomes less structured,
    ratio > 1, when the model is destroyed).
    """

    passed: bool
    final_rho: float
    complexity_ratio: float
    reason: str


def map_entropy(attribution: np.ndarray) -> float:
    """Discrete entropy of ``|map|`` normalised to a distribution over pixels (nats)."""
    weights = np.abs(np.asarray(attribution, np.float64)).ravel()
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        return 0.0
    p = weights[weights > 0] / total
    return float(-(p * np.log(p)).sum())


def sanity_verdict(steps: list[SanityStep]) -> SanityVerdict:
    """The verdict for one cascade (``cascading_randomization``'s steps)."""
    if len(steps) < 2:
        raise ValueError("A verdict needs the trained map and at least one randomised one.")
    final = steps[-1]
    before = map_entropy(steps[0].attribution)
    ratio = map_entropy(final.attribution) / before if before > 0 else float("inf")
    passed = abs(final.spearman) < RHO_PASS
    if passed:
        reason = (
            f"with every layer randomised, ρ falls to {final.spearman:+.2f} (below {RHO_PASS}): "
            "the map depends on the learned weights"
        )
    else:
        reason = (
            f"with every layer randomised, ρ is still {final.spearman:+.2f} (at least "
            f"{RHO_PASS}): the map mostly follows the input's shape, not what the model learned"
        )
    return SanityVerdict(passed, float(final.spearman), float(ratio), reason)
