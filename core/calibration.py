"""Calibration: temperature scaling, and its effect on NLL, ECE and reliability bins.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar ``T`` fitted on the
validation split by minimising the negative log-likelihood; it changes confidences, never the
predicted class. ECE and reliability bins come from ``core.evaluate``; what a confidence threshold
does (risk-coverage, accepted share) is :mod:`core.selective`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.evaluate import expected_calibration_error, reliability_bins, softmax

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


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
