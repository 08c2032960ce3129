"""core.selective: what a confidence threshold does on a labelled set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.selective import kept_at_rejection, selective_summary


def test_selective_summary_counts_accepted_digits_and_avoided_errors() -> None:
    probabilities = np.array(
        [
            [0.9, 0.1] + [0.0] * 8,  # correct, confident
            [0.6, 0.4] + [0.0] * 8,  # correct, unsure
            [0.3, 0.7] + [0.0] * 8,  # wrong, fairly confident
            [0.45, 0.55] + [0.0] * 8,  # wrong, unsure
        ]
    )
    labels = np.array([0, 0, 0, 0])
    summary = selective_summary(probabilities, labels, threshold=0.65)
    assert summary.accepted == 2 and summary.coverage == 0.5 and summary.total == 4
    assert summary.accuracy == 0.5 and summary.overall_accuracy == 0.5
    assert summary.errors == 2 and summary.errors_avoided == 1
    everything = selective_summary(probabilities, labels, threshold=0.0)
    assert everything.coverage == 1.0 and everything.errors_avoided == 0


def test_nothing_accepted_gives_nan_accuracy_not_an_error() -> None:
    probabilities = np.full((3, 10), 0.1)
    summary = selective_summary(probabilities, np.array([1, 2, 3]), threshold=0.5)
    assert summary.accepted == 0 and summary.coverage == 0.0 and math.isnan(summary.accuracy)
    empty = selective_summary(np.zeros((0, 10)), np.zeros(0, np.int64), threshold=0.5)
    assert empty.total == 0 and empty.coverage == 0.0 and math.isnan(empty.overall_accuracy)


def test_kept_at_rejection_is_the_share_of_digits_above_the_cut() -> None:
    digits = np.array([0.5, 0.9, 0.95, 0.99, 1.0])
    others = np.array([0.1, 0.2, 0.3, 0.9])
    # rejecting 3 of 4 others needs a threshold just above 0.3: every digit survives
    assert kept_at_rejection(digits, others, 0.75) == 1.0
    # rejecting all of them needs a threshold above 0.9: 0.5 and 0.9 are lost
    assert kept_at_rejection(digits, others, 1.0) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="rejection share"):
        kept_at_rejection(digits, others, 0.0)
