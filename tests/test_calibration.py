"""core.calibration (and core.evaluate's ECE): temperature scaling and risk-coverage curves."""

from __future__ import annotations

import numpy as np
import pytest

from core.calibration import calibration_report, fit_temperature, nll
from core.evaluate import expected_calibration_error, reliability_bins, softmax
from core.selective import (
    accuracy_at_coverage,
    area_under_risk_coverage,
    downsample_curve,
    risk_coverage,
)


def rows_with_confidence(confidences: list[float]) -> np.ndarray:
    """10-class probability rows whose maximum (class 0) is the given confidence."""
    rows = np.array([[c, *[(1 - c) / 9] * 9] for c in confidences])
    assert np.all(rows.argmax(axis=1) == 0)
    return rows


def overconfident_data(n: int, true_temperature: float, seed: int):
    """Labels drawn from softmax(z); the model reports z * true_temperature (overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 10)) * 1.5
    z[np.arange(n), rng.integers(0, 10, n)] += 2.0
    p = softmax(z)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z * true_temperature, labels


def test_ece_hand_worked_example():
    # Bin (0.8]: three at 0.8, two correct: |2/3 - 0.8| = 0.1333, weight 3/5.
    # Bin (0.55]: two at 0.55, both wrong: |0 - 0.55| = 0.55, weight 2/5.
    # ECE = 0.6 * 0.13333 + 0.4 * 0.55 = 0.08 + 0.22 = 0.30.
    probabilities = rows_with_confidence([0.8, 0.8, 0.8, 0.55, 0.55])
    labels = np.array([0, 0, 1, 1, 1])
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(0.30)
    table = reliability_bins(probabilities, labels, bins=10)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 2, 0, 3, 0, 0]
    assert table["accuracy"][7] == pytest.approx(2 / 3)
    assert table["confidence"][5] == pytest.approx(0.55)


def test_ece_zero_when_perfectly_calibrated():
    probabilities = rows_with_confidence([0.5, 0.5, 1.0])
    assert expected_calibration_error(probabilities, np.array([0, 1, 0]), bins=10) == 0.0


def test_nll_hand_example():
    logits = np.array([[0.0, np.log(3.0)]])
    assert nll(logits, np.array([1])) == pytest.approx(-np.log(0.75))
    assert nll(logits, np.array([0])) == pytest.approx(-np.log(0.25))
    # At T = 2 the logits halve: p(class 1) = sqrt(3) / (1 + sqrt(3)).
    assert nll(logits, np.array([1]), 2.0) == pytest.approx(-np.log(3**0.5 / (1 + 3**0.5)))


def test_temperature_recovers_the_true_overconfidence():
    logits, labels = overconfident_data(20000, true_temperature=2.5, seed=0)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.08)
    under, labels = overconfident_data(20000, true_temperature=0.5, seed=1)
    assert fit_temperature(under, labels) == pytest.approx(0.5, rel=0.08)


def test_temperature_lowers_nll_on_held_out_data():
    logits, labels = overconfident_data(6000, true_temperature=3.0, seed=2)
    fit, held_out = slice(0, 3000), slice(3000, None)
    temperature = fit_temperature(logits[fit], labels[fit])
    before = nll(logits[held_out], labels[held_out])
    after = nll(logits[held_out], labels[held_out], temperature)
    assert after < before - 0.05
    assert nll(logits[held_out], labels[held_out], temperature * 1.3) > after
    assert nll(logits[held_out], labels[held_out], temperature / 1.3) > after


def test_temperature_is_bounded_for_perfectly_separated_data():
    logits = np.eye(10)[np.arange(100) % 10] * 5.0
    temperature = fit_temperature(logits, np.arange(100) % 10)
    assert 0.05 <= temperature < 1.0


def test_calibration_report_lowers_ece_and_keeps_predictions():
    logits, labels = overconfident_data(8000, true_temperature=3.0, seed=3)
    report = calibration_report(logits[:4000], labels[:4000], logits[4000:], labels[4000:])
    assert report["temperature"] > 2.0
    assert report["ece_after"] < report["ece_before"]
    assert report["nll_after"] < report["nll_before"]
    assert report["val_nll_after"] <= report["val_nll_before"]
    before, after = report["reliability_before"], report["reliability_after"]
    assert before["count"].sum() == after["count"].sum() == 4000
    assert np.array_equal(
        softmax(logits[4000:]).argmax(1), softmax(logits[4000:], report["temperature"]).argmax(1)
    )


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((3, 10)), np.zeros(2, int))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.full((2, 10), np.nan), np.zeros(2, int))
    with pytest.raises(ValueError, match="at least one"):
        nll(np.zeros((0, 10)), np.zeros(0, int))
    with pytest.raises(ValueError, match="positive"):
        nll(np.zeros((1, 10)), np.zeros(1, int), 0.0)


def test_risk_coverage_hand_example_with_tie():
    probabilities = rows_with_confidence([0.6, 0.9, 0.8, 0.8])
    labels = np.array([1, 0, 1, 0])  # correct: 0.9 and one of the tied 0.8
    curve = risk_coverage(probabilities, labels)
    np.testing.assert_allclose(curve["threshold"], [0.9, 0.8, 0.6])
    np.testing.assert_allclose(curve["coverage"], [0.25, 0.75, 1.0])
    np.testing.assert_allclose(curve["accuracy"], [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(curve["risk"], [0.0, 1 / 3, 0.5])
    # AURC: one sample at risk 0, two at 1/3, one at 1/2, averaged.
    assert area_under_risk_coverage(curve) == pytest.approx((0 + 2 / 3 + 0.5) / 4)
    assert accuracy_at_coverage(curve, 0.5) == pytest.approx(2 / 3)
    assert accuracy_at_coverage(curve, 0.25) == 1.0
    assert accuracy_at_coverage(curve, 1.0) == 0.5


def test_risk_coverage_is_monotone_for_a_good_confidence():
    logits, labels = overconfident_data(3000, true_temperature=1.0, seed=4)
    curve = risk_coverage(softmax(logits), labels)
    assert curve["coverage"][-1] == 1.0
    assert np.all(np.diff(curve["coverage"]) > 0) and np.all(np.diff(curve["threshold"]) < 0)
    assert curve["accuracy"][-1] == pytest.approx((softmax(logits).argmax(1) == labels).mean())
    assert accuracy_at_coverage(curve, 0.5) > curve["accuracy"][-1]


def test_downsample_keeps_both_ends():
    logits, labels = overconfident_data(3000, true_temperature=1.0, seed=5)
    curve = risk_coverage(softmax(logits), labels)
    small = downsample_curve(curve, 100)
    assert len(small["coverage"]) <= 100
    assert small["coverage"][0] == curve["coverage"][0]
    assert small["coverage"][-1] == curve["coverage"][-1]
    assert set(small) == {"threshold", "coverage", "accuracy", "risk"}
