"""The committed checkpoints: they load, meet the accuracy targets, and their figures are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.checkpoints import load_model, weights_path
from core.data import load_mnist_test
from core.evalfile import read_eval_file
from core.evaluate import predict_logits, softmax
from core.model_card import render_model_card
from core.models import VARIANTS, count_parameters

TARGETS = {"cnn1": 0.9920, "cnn2": 0.9950, "cnn3": 0.9960, "logreg": 0.92, "mlp": 0.985}


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_checkpoint_loads_and_is_small(variant: str, shipped_checkpoints: Path) -> None:
    model, meta = load_model(variant, shipped_checkpoints)
    assert meta["params"] == count_parameters(model)
    assert weights_path(variant, shipped_checkpoints).stat().st_size < 5 * 1024 * 1024
    assert meta["training"]["train_size"] == 55_000, "shipped models train on the full training set"
    assert len(meta["history"]) == meta["training"]["epochs_run"]
    assert (shipped_checkpoints / f"{variant}.md").read_text().count(f"{variant}") >= 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_recorded_accuracy_is_reproduced_and_meets_target(
    variant: str, shipped_checkpoints: Path, data_dir: Path
) -> None:
    model, meta = load_model(variant, shipped_checkpoints)
    images, labels = load_mnist_test(data_dir)
    probabilities = softmax(predict_logits(model, images, meta["normalization"]))
    accuracy = float((probabilities.argmax(1) == labels.numpy()).mean())
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert accuracy >= TARGETS[variant]
    saved = read_eval_file(variant, shipped_checkpoints)
    np.testing.assert_array_equal(saved.labels, labels.numpy())
    np.testing.assert_allclose(saved.probabilities, probabilities, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_card_is_generated_from_the_recorded_figures(
    variant: str, shipped_checkpoints: Path
) -> None:
    _, meta = load_model(variant, shipped_checkpoints)
    card = (shipped_checkpoints / f"{variant}.md").read_text(encoding="utf-8")
    assert card == render_model_card(meta), "model card out of date: run scripts/evaluate_all.py"
    assert f"| test accuracy | {100 * meta['test_accuracy']:.2f}% |" in card
    fashion = meta["ood"]["sets"]["fashion_mnist"]
    assert f"| Fashion-MNIST | 2,000 | {fashion['auroc_msp']:.3f} |" in card
    config = meta["training"]["config"]
    assert ("loops closed" in card) == config["augment"]  # the CNNs augment, the baselines not
    assert ("Outlier exposure" in card) == (config["outlier_weight"] > 0)
