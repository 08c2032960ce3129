"""Shared fixtures: where the MNIST data and the shipped checkpoints are, skipping when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.checkpoints import DEFAULT_DIRECTORY, available_variants
from core.data import RAW_ARCHIVES
from core.models import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def find_data_dir() -> Path | None:
    """MNIST directory from $DIGIT_LENS_DATA or ../shared/data, if it holds the raw archives."""
    candidates = [os.environ.get("DIGIT_LENS_DATA"), SHARED_DATA]
    for candidate in candidates:
        if candidate and all(
            (Path(candidate) / "MNIST" / "raw" / n).exists() for n in RAW_ARCHIVES
        ):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The full MNIST data directory; skips the test when it is not on this machine."""
    found = find_data_dir()
    if found is None:
        pytest.skip("full MNIST not present (set DIGIT_LENS_DATA or provide ../shared/data)")
    return found


@pytest.fixture(scope="session")
def shipped_checkpoints() -> Path:
    """The committed checkpoints directory; fails loudly if a shipped variant is missing."""
    missing = [v for v in VARIANTS if v not in available_variants(DEFAULT_DIRECTORY)]
    assert not missing, f"shipped checkpoints missing for {missing}"
    return DEFAULT_DIRECTORY
