"""Which explanation to believe: faithfulness scores for attribution maps.

A map is faithful when the pixels it ranks highest are the ones the model needs. Measured by
perturbing the input in the map's order and watching the target class's probability:

- **Deletion** (Petsiuk et al. 2018, TorchCAM's metric): pixels are set to black (the background,
  in normalised space) most-relevant-first; the area under the probability curve is *lower* for a
  faithful map.
- **Insertion**: pixels are copied onto a black image most-relevant-first; the area is *higher*
  for a faithful map.
- **ROAD** (Rong et al., ICML 2022; pytorch-grad-cam's ROADCombined): pixels are removed
  most-relevant-first (MoRF) and least-relevant-first (LeRF) at 20/40/60/80% and *imputed* from
  their neighbours with noisy linear imputation, so the removal itself leaks no shape; the
  combined score is the mean of (LeRF - MoRF) / 2, higher for a faithful map.

Two baselines say what the numbers are worth: a **random** map (seeded) and an **edge** map
(Sobel magnitude of the digit), which needs no model at all. Every curve of every map for one digit
goes through the model in a single batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from torch import nn

from core.explain import attribute_batch, conv_layer_names
from core.inputs import IMAGE_SIDE, black_baseline, check_normalization
from core.locks import model_lock
from core.methods import METHODS
from core.sanity import RHO_PASS, randomization_order, randomize_layer, rank_correlation

STEPS = 14  # 56 pixels per step: the curve has 15 points from 0% to 100% of the pixels
ROAD_PERCENTILES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
ROAD_NOISE = 0.01  # imputation noise, in [0, 1] pixel units
BASELINE_MAPS = {"random": "Random map", "edges": "Edge map (Sobel)"}
_PIXELS = IMAGE_SIDE * IMAGE_SIDE


@dataclass(frozen=True)
class Faithfulness:
    """One map's scores on one digit: curves (probability of the target after each step) and
    their areas, and the ROAD combined score when asked for."""

    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    road: float | None = None

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve, x in [0, 1] (lower = more faithful)."""
        return _auc(self.deletion_curve)

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve, x in [0, 1] (higher = more faithful)."""
        return _auc(self.insertion_curve)


def _auc(curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def random_map(seed: int = 0) -> np.ndarray:
    """A uniform random map (the floor any explanation must beat)."""
    return np.random.default_rng([seed, 7]).random((IMAGE_SIDE, IMAGE_SIDE)).astype(np.float32)


def edge_map(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the 28×28 image: an explanation that ignores the model."""
    image = np.asarray(image, np.float64)
    return np.hypot(ndimage.sobel(image, 0), ndimage.sobel(image, 1)).astype(np.float32)


def relevance_order(attribution: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel indices most relevant first (ties broken by a seeded shuffle, not by position)."""
    values = np.asarray(attribution, np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError("The attribution map holds NaN or infinite values.")
    shuffle = np.random.default_rng([seed, 3]).permutation(_PIXELS)
    return shuffle[np.argsort(-values[shuffle], kind="stable")]


def _curve_inputs(image: np.ndarray, order: np.ndarray, black: float, steps: int) -> np.ndarray:
    """Deletion then insertion images ``[2 (steps + 1), 28, 28]`` in normalised space."""
    flat = image.ravel()
    counts = np.linspace(0, _PIXELS, steps + 1).round().astype(int)
    deleted = np.repeat(flat[None], steps + 1, axis=0)
    inserted = np.full_like(deleted, black)
    for row, count in enumerate(counts):
        chosen = order[:count]
        deleted[row, chosen] = black
        inserted[row, chosen] = flat[chosen]
    return np.concatenate([deleted, inserted]).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def _neighbour_table() -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of the 28×28 grid: its 8 neighbours' indices (-1 outside the image) and
    their weights (direct 1/6, diagonal 1/12), renormalised to sum to 1 at the border."""
    offsets = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]  # fmt: skip
    rows, cols = np.divmod(np.arange(_PIXELS), IMAGE_SIDE)
    index = np.full((_PIXELS, len(offsets)), -1)
    weight = np.zeros((_PIXELS, len(offsets)))
    for k, (dr, dc, w) in enumerate(offsets):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < IMAGE_SIDE) & (c >= 0) & (c < IMAGE_SIDE)
        index[inside, k] = (r * IMAGE_SIDE + c)[inside]
        weight[inside, k] = w
    return index, weight / weight.sum(1, keepdims=True)


_NEIGHBOURS, _NEIGHBOUR_WEIGHTS = _neighbour_table()


def noisy_linear_impute(
    image: np.ndarray, removed: np.ndarray, rng: np.random.Generator, noise: float = ROAD_NOISE
) -> np.ndarray:
    """Fill the ``removed`` pixels of a [0, 1] image from their neighbours (ROAD's imputation).

    Each removed pixel is the weighted mean of its 8 neighbours (direct 1/6, diagonal 1/12,
    renormalised at the border), solved for all removed pixels at once, plus a little noise.
    """
    image = np.asarray(image, np.float64)
    flat = image.ravel()
    unknown = np.flatnonzero(np.asarray(removed, bool).ravel())
    if not len(unknown):
        return image.copy()
    column = np.full(_PIXELS, -1)
    column[unknown] = np.arange(len(unknown))
    neighbours, weights = _NEIGHBOURS[unknown], _NEIGHBOUR_WEIGHTS[unknown]
    valid = neighbours >= 0
    neighbour_column = np.where(valid, column[np.maximum(neighbours, 0)], -1)
    known = valid & (neighbour_column < 0)
    rhs = (weights * np.where(known, flat[np.maximum(neighbours, 0)], 0.0)).sum(1)
    coupled = valid & (neighbour_column >= 0)
    row_index = np.repeat(np.arange(len(unknown))[:, None], neighbours.shape[1], axis=1)
    rows = np.concatenate([np.arange(len(unknown)), row_index[coupled]])
    cols = np.concatenate([np.arange(len(unknown)), neighbour_column[coupled]])
    values = np.concatenate([np.ones(len(unknown)), -weights[coupled]])
    system = sparse.csr_matrix((values, (rows, cols)), shape=(len(unknown), len(unknown)))
    solved = np.atleast_1d(spsolve(system, rhs))
    out = flat.copy()
    out[unknown] = np.clip(solved + rng.normal(0, noise, len(unknown)), 0.0, 1.0)
    return out.reshape(image.shape)


def _road_inputs(image: np.ndarray, order: np.ndarray, seed: int) -> np.ndarray:
    """MoRF then LeRF images ``[2 P, 28, 28]`` in [0, 1], one per ROAD percentile."""
    rng = np.random.default_rng([seed, 11])
    images = []
    for reverse in (False, True):
        ranked = order[::-1] if reverse else order
        for fraction in ROAD_PERCENTILES:
            removed = np.zeros(_PIXELS, bool)
            removed[ranked[: round(fraction * _PIXELS)]] = True
            images.append(noisy_linear_impute(image, removed, rng))
    return np.stack(images)


@torch.no_grad()
def _probabilities(model: nn.Module, batch: np.ndarray, target: int) -> np.ndarray:
    """Softmax probability of ``target`` for a normalised batch ``[N, 28, 28]``."""
    x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).unsqueeze(1)
    with model_lock(model):
        logits = model(x)
    return torch.softmax(logits.double(), dim=1)[:, target].numpy()


def faithfulness(
    model: nn.Module,
    image: np.ndarray,
    target: int,
    maps: Mapping[str, np.ndarray],
    normalization: Mapping[str, float] | None = None,
    *,
    road: bool = False,
    steps: int = STEPS,
    seed: int = 0,
) -> dict[str, Faithfulness]:
    """Deletion and insertion (and ROAD with ``road``) of every map in ``maps`` on one digit.

    ``image`` is the 28×28 input in [0, 1]; maps are ``[28, 28]``, higher = more relevant (pass
    signed maps as they are: their positive evidence ranks first). The model is in eval mode.
    """
    mean, std = check_normalization(normalization)
    black = black_baseline(normalization)
    image = np.asarray(image, np.float64)
    normalised = (image - mean) / std
    orders = {name: relevance_order(values, seed) for name, values in maps.items()}
    batches = [_curve_inputs(normalised, order, black, steps) for order in orders.values()]
    if road:
        batches += [(_road_inputs(image, order, seed) - mean) / std for order in orders.values()]
    probabilities = _probabilities(model, np.concatenate(batches), target)
    results, start = {}, 0
    curves = 2 * (steps + 1)
    for name in orders:
        chunk = probabilities[start : start + curves]
        results[name] = [chunk[: steps + 1], chunk[steps + 1 :]]
        start += curves
    scores = {}
    for name in orders:
        road_score = None
        if road:
            chunk = probabilities[start : start + 2 * len(ROAD_PERCENTILES)]
            morf, lerf = chunk[: len(ROAD_PERCENTILES)], chunk[len(ROAD_PERCENTILES) :]
            road_score = float(np.mean((lerf - morf) / 2))
            start += 2 * len(ROAD_PERCENTILES)
        deletion, insertion = results[name]
        scores[name] = Faithfulness(deletion, insertion, road_score)
    return scores


def _map_batch(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    targets: list[int],
    layer: str | None,
    normalization: Mapping[str, float],
    chunk: int = 100,
) -> np.ndarray:
    """Maps ``[N, 28, 28]`` of ``method`` for a normalised batch, ``chunk`` images at a time."""
    return np.concatenate(
        [
            attribute_batch(
                model,
                x[start : start + chunk],
                method,
                targets[start : start + chunk],
                layer=layer,
                normalization=normalization,
            )
            for start in range(0, len(x), chunk)
        ]
    )


def dataset_faithfulness(
    model: nn.Module,
    images: np.ndarray,
    normalization: Mapping[str, float],
    *,
    road_images: int = 200,
    sanity_images: int = 100,
    steps: int = 14,
    seed: int = 0,
) -> dict:
    """Mean deletion AUC, insertion AUC, ROAD combined and randomisation ρ of every method (and
    every conv layer for layer methods) on ``images`` (uint8 ``[N, 28, 28]``), with the random
    and edge baselines. Targets are the model's own predictions. JSON-ready and deterministic.
    """
    mean, std = check_normalization(normalization)
    unit = images.astype(np.float32) / 255.0
    x = torch.from_numpy((unit - mean) / std).unsqueeze(1)
    with torch.no_grad():
        targets = model(x).argmax(1).tolist()
    layers = conv_layer_names(model)
    entries: dict[str, tuple[str, str | None]] = {}
    for key, spec in METHODS.items():
        for layer in layers if spec.needs_layer else [None]:
            name = key if layer is None else f"{key}@{layer}"
            if spec.needs_layer and not layers:
                continue
            entries[name] = (key, layer)
    maps = {name: _map_batch(model, x, key, targets, layer, normalization)
            for name, (key, layer) in entries.items()}  # fmt: skip
    maps["random"] = np.stack([random_map(seed + i) for i in range(len(unit))])
    maps["edges"] = np.stack([edge_map(image) for image in unit])
    sums: dict[str, dict[str, float]] = {
        name: {"deletion_auc": 0.0, "insertion_auc": 0.0, "road": 0.0} for name in maps
    }
    for i in range(len(unit)):
        road = i < road_images
        scores = faithfulness(
            model,
            unit[i],
            targets[i],
            {name: values[i] for name, values in maps.items()},
            normalization,
            road=road,
            steps=steps,
            seed=seed + i,
        )
        for name, score in scores.items():
            sums[name]["deletion_auc"] += score.deletion_auc
            sums[name]["insertion_auc"] += score.insertion_auc
            sums[name]["road"] += score.road if road else 0.0
    n, n_road = len(unit), min(road_images, len(unit))
    result = {
        name: {
            "deletion_auc": total["deletion_auc"] / n,
            "insertion_auc": total["insertion_auc"] / n,
            "road": total["road"] / n_road,
        }
        for name, total in sums.items()
    }
    # Cascading randomisation over a subset: rho between the trained and the fully randomised
    # model's maps (absolute), averaged over the images.
    subset = min(sanity_images, len(unit))
    with model_lock(model):
        randomised = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(seed)
    for name in randomization_order(randomised):
        randomize_layer(randomised, name, generator)
    for name, (key, layer) in entries.items():
        after = _map_batch(randomised, x[:subset], key, targets[:subset], layer, normalization)
        rhos = [rank_correlation(maps[name][i], after[i]) for i in range(subset)]
        result[name]["randomisation_rho"] = float(np.mean(rhos))
        result[name]["sanity_passed"] = bool(abs(result[name]["randomisation_rho"]) < RHO_PASS)
    return {
        "images": n,
        "road_images": n_road,
        "sanity_images": subset,
        "steps": steps,
        "methods": result,
    }


def faithfulness_score(entry: Mapping[str, float]) -> float:
    """One number to rank maps: insertion AUC minus deletion AUC (higher = more faithful)."""
    return float(entry["insertion_auc"]) - float(entry["deletion_auc"])


def most_faithful(methods: Mapping[str, Mapping[str, float]]) -> str | None:
    """The method key (``gradcam@layer`` entries give ``gradcam``) that measures most faithful
    among those passing the sanity check, by :func:`faithfulness_score`; None if none does."""
    ranked = sorted(
        (
            (faithfulness_score(entry), name)
            for name, entry in methods.items()
            if name not in BASELINE_MAPS and entry.get("sanity_passed", True)
        ),
        reverse=True,
    )
    return ranked[0][1].split("@", 1)[0] if ranked else None
