"""Selective prediction and calibration: temperature scaling and risk-coverage curves.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar ``T`` fitted on the
validation split by minimising the negative log-likelihood; it changes confidences, never the
predicted class. ECE and reliability bins come from ``core.evaluate``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.evaluate import expected_calibration_error, reliability_bins, softmax

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
REPORT_COVERAGES = (0.99, 0.95, 0.90)


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise ValueError(
            f"Expected logits [N, C] and labels [N], got {logits.shape} and {labels.shape}."
        )
    if len(labels) == 0:
        raise ValueError("Need at least one sample.")
    if not np.isfinite(logits).all():
        raise ValueError("Logits hold NaN or infinite values.")
    return torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (cross-entropy, nats) of ``softmax(logits / temperature)``."""
    if not temperature > 0:
        raise ValueError(f"Temperature must be positive, got {temperature}.")
    z, y = _check(logits, labels)
    return float(F.cross_entropy(z / temperature, y))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL, by L-BFGS on ``log T``.

    Clipped to [0.05, 20]: a split the model classifies perfectly would otherwise push ``T``
    towards 0 without bound.
    """
    z, y = _check(logits, labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(low, high).exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    value = float(log_t.detach().clamp(low, high).exp())
    return value if math.isfinite(value) else 1.0


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


def calibration_report(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    bins: int = 15,
) -> dict:
    """Temperature fitted on validation; NLL, ECE and reliability bins on test before and after."""
    temperature = fit_temperature(val_logits, val_labels)
    before = softmax(np.asarray(test_logits, np.float64))
    after = softmax(np.asarray(test_logits, np.float64), temperature)
    return {
        "temperature": temperature,
        "val_nll_before": nll(val_logits, val_labels),
        "val_nll_after": nll(val_logits, val_labels, temperature),
        "nll_before": nll(test_logits, test_labels),
        "nll_after": nll(test_logits, test_labels, temperature),
        "ece_before": expected_calibration_error(before, test_labels, bins),
        "ece_after": expected_calibration_error(after, test_labels, bins),
        "reliability_before": reliability_bins(before, test_labels, bins),
        "reliability_after": reliability_bins(after, test_labels, bins),
    }
