"""What would change the answer: the smallest change to a digit that makes a model say a target.

A targeted projected-gradient attack (Madry et al. 2018) with an L2 budget in *image* space
(pixels in [0, 1], clipped there after every step), run for an increasing ladder of budgets, a
few at a time in one batch, until the model answers the target; the smallest successful change on
any path is kept.

How small that change is measures the model, not the drawing: a few faint pixels that flip the
answer show how close the decision boundary runs to real digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from core.inputs import check_normalization
from core.locks import model_lock

# Budgets (L2 norm of the change, pixels in [0, 1]), tried from the smallest up, GROUP per
# batch. A digit's own ink is ~9-10 in L2; one faint extra stroke ~1-2.
BUDGETS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0)
STEPS = 16
GROUP = 6


@dataclass(frozen=True)
class Counterfactual:
    """The changed digit (``image``, [0, 1]), the change (``delta`` = image − original), its L2
    size, the budget it was found under, the calibrated probabilities, and whether the model now
    says ``target`` (``reached``; when not, the result of the largest budget is kept)."""

    target: int
    image: np.ndarray
    delta: np.ndarray
    l2: float
    budget: float
    probabilities: np.ndarray
    reached: bool


def _norms(batch: torch.Tensor) -> torch.Tensor:
    """Each sample's L2 norm, shaped [B, 1, 1, 1] to divide by (never zero)."""
    return batch.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _attack(
    model: nn.Module,
    original: torch.Tensor,
    target: int,
    eps: torch.Tensor,
    steps: int,
    normalization: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PGD for each budget of ``eps`` [B] at once: the smallest successful change on each path
    (its L2, inf if none) and the last change."""
    mean, std = normalization
    eps = eps.view(-1, 1, 1, 1)
    step_size = 2.5 * eps / steps
    labels = torch.full((len(eps),), target, dtype=torch.long)
    delta = torch.zeros(len(eps), 1, 28, 28)
    best_l2 = torch.full((len(eps),), float("inf"))
    best = torch.zeros_like(delta)
    for _ in range(steps + 1):
        x = (original + delta).requires_grad_(True)
        logits = model((x - mean) / std)
        norms = delta.flatten(1).norm(dim=1)
        better = (logits.argmax(dim=1) == target) & (norms < best_l2)
        best_l2 = torch.where(better, norms, best_l2)
        best[better] = delta[better]
        loss = functional.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        delta = delta - step_size * grad / _norms(grad)
        shrink = (eps / _norms(delta)).clamp(max=1.0)
        delta = ((original + delta * shrink).clamp(0.0, 1.0) - original).detach()
    return best_l2, best, delta


def counterfactual(
    model: nn.Module,
    image: np.ndarray,
    target: int,
    normalization: Mapping[str, float] | None = None,
    temperature: float = 1.0,
    *,
    budgets: Sequence[float] = BUDGETS,
    steps: int = STEPS,
    group: int = GROUP,
) -> Counterfactual:
    """The smallest change (L2, image space) found that makes ``model`` answer ``target``.

    The budgets are tried from the smallest up, ``group`` at a time (one batch), stopping after
    the first group where the model says ``target``. Each budget ε runs ``steps`` steps of size
    2.5·ε/steps along the normalised gradient of the cross-entropy towards ``target``, projected
    onto the ε-ball and then clipped to [0, 1] (clipping only shrinks the change, so it stays
    within ε). The smallest successful change on any path is kept. The passes hold the model's
    lock; gradients are taken for the input only, never stored on the weights.
    """
    if not 0 <= int(target) <= 9:
        raise ValueError(f"target must be a digit 0-9, got {target}.")
    norm = check_normalization(normalization)
    original = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).view(1, 1, 28, 28)
    ladder = sorted(float(b) for b in budgets)
    best_l2, change, budget = float("inf"), torch.zeros(1, 28, 28), ladder[-1]
    with model_lock(model), torch.enable_grad():
        for start in range(0, len(ladder), group):
            eps = torch.tensor(ladder[start : start + group])
            found_l2, found, last = _attack(model, original, int(target), eps, steps, norm)
            pick = int(found_l2.argmin())
            if torch.isfinite(found_l2[pick]):
                best_l2, change, budget = float(found_l2[pick]), found[pick], float(eps[pick])
                break
            change = last[-1]
        changed = (original[0] + change).clamp(0.0, 1.0)
        with torch.no_grad():
            final = model((changed.unsqueeze(0) - norm[0]) / norm[1]).double()
    probabilities = torch.softmax(final / temperature, dim=1)[0].numpy()
    out = changed[0].numpy().astype(np.float32)
    delta = out - np.asarray(image, np.float32)
    return Counterfactual(
        target=int(target),
        image=out,
        delta=delta,
        l2=float(np.linalg.norm(delta)),
        budget=budget,
        probabilities=probabilities,
        reached=bool(np.isfinite(best_l2)) and int(probabilities.argmax()) == int(target),
    )
