"""Evaluate shipped checkpoints on the MNIST test set and write what the dashboard reads.

For every variant: test accuracy, per-class report, confusion matrix and ECE go into the JSON
metadata; every test sample's logits and probabilities go into ``<variant>.eval.npz``; the model
card ``<variant>.md`` is regenerated. Runs in seconds, so it can be re-run without retraining.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError
from core.data import DataUnavailableError
from core.models import VARIANTS
from core.precompute import evaluate_all


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        results = evaluate_all(args.variants, args.checkpoints, args.data_dir)
    except (DataUnavailableError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for meta in results:
        print(
            f"{meta['variant']}: test accuracy {100 * meta['test_accuracy']:.2f}%, "
            f"ECE {meta['test_ece']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
