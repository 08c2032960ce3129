"""Canvas-style MNIST digits through the full pipeline stay within 0.5 points of direct accuracy.

Test digits are drawn the way people draw on the 280×280 canvas (thick strokes, 30-90 % of the
height, anywhere, black on white or transparent; see ``tests.imagefactory``), then preprocessed
and predicted exactly like the dashboard does. ``scripts/benchmark_inference.py`` prints the
same figures on the whole test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data import load_mnist_test
from core.predict import Predictor
from core.preprocess import preprocess
from tests.imagefactory import canvas_style_accuracy

DIGITS = 3000
MAX_GAP = 0.005


@pytest.mark.slow
def test_canvas_style_accuracy_is_within_half_a_point(
    data_dir: Path, shipped_checkpoints: Path
) -> None:
    images, labels = load_mnist_test(data_dir)
    pick = np.random.default_rng(0).choice(len(images), DIGITS, replace=False)
    predictor = Predictor(directory=shipped_checkpoints)
    figures = canvas_style_accuracy(predictor, images.numpy()[pick], labels.numpy()[pick])
    report = ", ".join(
        f"{v}: canvas {f['canvas']:.2%} vs direct {f['direct']:.2%} "
        f"(full test set {predictor.metadata[v]['test_accuracy']:.2%})"
        for v, f in figures.items()
    )
    print(report)
    assert all(f["blank"] == 0 for f in figures.values()), report
    for variant, f in figures.items():
        assert f["canvas"] >= f["direct"] - MAX_GAP, f"{variant} misses the target: {report}"


@pytest.mark.slow
def test_mnist_format_uploads_pass_through_nearly_unchanged(
    data_dir: Path, shipped_checkpoints: Path
) -> None:
    """Digits already in MNIST's format are left (almost) as they are, and predicted the same."""
    images, _ = load_mnist_test(data_dir)
    sample = images.numpy()[np.random.default_rng(1).choice(len(images), 300, replace=False)]
    processed = np.stack([preprocess(image).image for image in sample])
    change = np.abs(processed - sample / 255.0).mean(axis=(1, 2))
    assert np.median(change) < 0.002 and np.percentile(change, 90) < 0.01
    predictor = Predictor(["cnn3"], shipped_checkpoints)
    same = predictor.predict_batch(processed, "cnn3").argmax(1)
    direct = predictor.predict_batch(sample, "cnn3").argmax(1)
    assert np.mean(same == direct) >= 0.995
