"""Test-set evaluation: accuracy, per-class report, confusion matrix, calibration error.

Works on probabilities so the same functions serve fresh predictions and the saved
``checkpoints/<variant>.eval.npz`` files the dashboard reads.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.inputs import to_input

NUM_CLASSES = 10


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    normalization: dict[str, float],
    batch_size: int = 1000,
) -> np.ndarray:
    """Logits ``[N, 10]`` (float32) for uint8 ``[N, 28, 28]`` or float ``[N, 1, 28, 28]`` images."""
    model.eval()
    chunks = [
        model(to_input(images[start : start + batch_size], normalization)).float().numpy()
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, NUM_CLASSES), np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, classes: int = NUM_CLASSES
) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def per_class_report(matrix: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall (= per-class accuracy), F1 and support for every class of a confusion matrix."""
    rows = []
    for c in range(matrix.shape[0]):
        tp = float(matrix[c, c])
        predicted = float(matrix[:, c].sum())
        support = float(matrix[c, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "class": c,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": int(support),
            }
        )
    return rows


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> dict[str, np.ndarray]:
    """Equal-width confidence bins: per bin count, mean confidence and accuracy (NaN when empty)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": edges,
            "count": counts,
            "confidence": np.where(counts > 0, conf_sum / counts, np.nan),
            "accuracy": np.where(counts > 0, acc_sum / counts, np.nan),
        }


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """ECE: sample-weighted mean |accuracy − confidence| over equal-width confidence bins."""
    table = reliability_bins(probabilities, labels, bins)
    counts = table["count"]
    if counts.sum() == 0:
        return 0.0
    gaps = np.abs(np.nan_to_num(table["accuracy"]) - np.nan_to_num(table["confidence"]))
    return float((counts * gaps).sum() / counts.sum())


def summarize(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, confusion matrix, per-class report and ECE for probabilities ``[N, 10]``."""
    labels = np.asarray(labels)
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions)
    return {
        "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
        "confusion": matrix,
        "per_class": per_class_report(matrix),
        "ece": expected_calibration_error(probabilities, labels),
    }
