"""Selective prediction: accept a prediction only when its confidence clears a threshold.

What a threshold does on a labelled set (:func:`selective_summary`: accepted share, accuracy of
the accepted, mistakes avoided) and the whole trade-off as a risk-coverage curve
(:func:`risk_coverage`, Geifman & El-Yaniv 2017), with its area (AURC) and the accuracy at a
given coverage. The precompute script and the dashboard both call these, so the figures agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REPORT_COVERAGES = (0.99, 0.95, 0.90)
# The operating point is "keep this share of real digits" (validation split), the same meaning
# for every model; thresholds are stored for every level so a slider can move in these units.
# 97% of validation digits keeps 97.2-97.7% of MNIST test digits (target >= 97%) and rejects
# more non-digits than 97.5% did, on every model (README, "Rejection").
DEFAULT_KEEP = 0.97
KEEP_LEVELS: tuple[float, ...] = tuple(round(0.80 + 0.0025 * i, 4) for i in range(81))


def is_rejected(confidence: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """The one rejection rule: a prediction is rejected when its confidence is below
    ``threshold`` (so 0 rejects nothing). NaN confidence is always rejected."""
    confidence = np.asarray(confidence, dtype=np.float64)
    result = ~(confidence >= threshold)
    return bool(result) if result.ndim == 0 else result


@dataclass(frozen=True)
class SelectiveSummary:
    """What accepting ``confidence >= threshold`` does on a labelled set.

    ``accuracy`` is the accuracy of the accepted predictions (NaN when none is accepted);
    ``errors_avoided`` counts the mistakes that were rejected.
    """

    threshold: float
    total: int
    accepted: int
    coverage: float
    accuracy: float
    overall_accuracy: float
    errors: int
    errors_avoided: int


def selective_summary(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float
) -> SelectiveSummary:
    """Accepted share, accuracy of the accepted and mistakes avoided at ``threshold``."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    confidence = probabilities.max(axis=1) if len(labels) else np.zeros(0)
    correct = probabilities.argmax(axis=1) == labels if len(labels) else np.zeros(0, bool)
    keep = ~is_rejected(confidence, threshold)
    accepted = int(keep.sum())
    return SelectiveSummary(
        threshold=float(threshold),
        total=len(labels),
        accepted=accepted,
        coverage=accepted / len(labels) if len(labels) else 0.0,
        accuracy=float(correct[keep].mean()) if accepted else float("nan"),
        overall_accuracy=float(correct.mean()) if len(labels) else float("nan"),
        errors=int((~correct).sum()),
        errors_avoided=int((~correct & ~keep).sum()),
    )


def risk_coverage(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Selective-prediction curve: accept the most confident predictions first.

    One point per distinct confidence threshold (accept if max probability ``>= threshold``), in
    order of decreasing threshold: ``threshold``, ``coverage`` (fraction accepted), ``accuracy``
    of the accepted ones and ``risk`` (= 1 - accuracy). Tied confidences are accepted together,
    so every point is reachable by some threshold.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or len(labels) == 0:
        raise ValueError("Expected non-empty probabilities [N, C] and labels [N].")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    ends = np.flatnonzero(np.r_[confidence[1:] != confidence[:-1], True])
    accepted = ends + 1
    accuracy = np.cumsum(correct)[ends] / accepted
    return {
        "threshold": confidence[ends].astype(np.float64),
        "coverage": accepted / len(labels),
        "accuracy": accuracy,
        "risk": 1.0 - accuracy,
    }


def area_under_risk_coverage(curve: dict[str, np.ndarray]) -> float:
    """AURC: selective risk averaged over every sample's coverage level (lower is better)."""
    coverage = np.asarray(curve["coverage"])
    group = np.diff(np.r_[0.0, coverage])
    return float((group * np.asarray(curve["risk"])).sum() / coverage[-1])


def accuracy_at_coverage(curve: dict[str, np.ndarray], coverage: float) -> float:
    """Accuracy of the accepted predictions at the smallest coverage ``>= coverage``."""
    index = int(np.searchsorted(curve["coverage"], coverage - 1e-12, side="left"))
    return float(curve["accuracy"][min(index, len(curve["accuracy"]) - 1)])


def downsample_curve(curve: dict[str, np.ndarray], points: int = 500) -> dict[str, np.ndarray]:
    """At most ``points`` points of a risk-coverage curve (always keeping both ends), for storage."""
    n = len(curve["coverage"])
    if n <= points:
        return {key: np.asarray(value) for key, value in curve.items()}
    index = np.unique(np.linspace(0, n - 1, points).round().astype(int))
    return {key: np.asarray(value)[index] for key, value in curve.items()}


def thresholds_for_coverage(
    in_scores: np.ndarray, coverages: tuple[float, ...] = REPORT_COVERAGES
) -> dict[float, float]:
    """For each coverage ``c``: the highest threshold that still accepts (score >= threshold) at
    least a fraction ``c`` of the in-distribution scores."""
    ordered = np.sort(np.asarray(in_scores, np.float64).ravel())[::-1]
    if not len(ordered):
        raise ValueError("Need at least one in-distribution score.")
    result = {}
    for coverage in coverages:
        if not 0 < coverage <= 1:
            raise ValueError(f"Coverage must be in (0, 1], got {coverage}.")
        keep = min(len(ordered), max(1, math.ceil(coverage * len(ordered) - 1e-9)))
        result[coverage] = float(ordered[keep - 1])
    return result


def operating_curve(scores: np.ndarray, levels: tuple[float, ...] = KEEP_LEVELS) -> dict:
    """For each keep level: the threshold that keeps that share of ``scores`` (real digits).

    JSON-ready: ``{"keep": [...], "threshold": [...]}``, keep ascending, threshold descending.
    """
    table = thresholds_for_coverage(scores, levels)
    return {"keep": list(levels), "threshold": [table[level] for level in levels]}


def threshold_for_keep(curve: dict, keep: float) -> float:
    """The threshold that keeps ``keep`` of real digits, interpolated on an operating curve.

    ``keep >= 1`` switches rejection off (threshold 0); below the curve's range the lowest level's
    threshold is used.
    """
    if not math.isfinite(keep) or keep >= 1.0:
        return 0.0
    levels = np.asarray(curve["keep"], np.float64)
    thresholds = np.asarray(curve["threshold"], np.float64)
    return float(np.interp(keep, levels, thresholds))


def kept_at_rejection(in_scores: np.ndarray, out_scores: np.ndarray, rejection: float) -> float:
    """The share of ``in_scores`` (real digits) still kept by the lowest threshold that rejects
    at least ``rejection`` of ``out_scores``: what a rejection target costs in real digits."""
    out_sorted = np.sort(np.asarray(out_scores, np.float64))
    if not len(out_sorted) or not 0.0 < rejection <= 1.0:
        raise ValueError("need out-of-distribution scores and a rejection share in (0, 1].")
    count = math.ceil(rejection * len(out_sorted) - 1e-9)
    threshold = np.nextafter(out_sorted[count - 1], np.inf)
    return float(np.mean(~is_rejected(np.asarray(in_scores, np.float64), threshold)))
