"""Evaluate shipped checkpoints on the MNIST test set and write what the dashboard reads.

For every variant: test accuracy, per-class report, confusion matrix, ECE before and after
temperature scaling (fitted on the validation split), risk-coverage summary and out-of-distribution
AUROC / rejection rates go into the JSON metadata; every test sample's logits and probabilities,
OOD scores, reliability bins and the risk-coverage curve go into ``<variant>.eval.npz``; the model
card ``<variant>.md`` is regenerated, without retraining. Rewrites every checkpoint's ``.json``,
``.eval.npz`` and ``.md`` (the weights are untouched); about 2 minutes on a 2-core CPU.
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
        print_figures(meta)
    return 0


def print_figures(meta: dict) -> None:
    """Accuracy, calibration, selective-prediction and OOD figures of one variant."""
    calibration, ood = meta["calibration"], meta["ood"]
    print(
        f"\n{meta['variant']}: test accuracy {100 * meta['test_accuracy']:.2f}%, "
        f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f} "
        f"(T = {calibration['temperature']:.3f}), NLL {calibration['nll_before']:.4f} -> "
        f"{calibration['nll_after']:.4f}, AURC {meta['selective']['aurc']:.5f}"
    )
    coverages = list(ood["thresholds"]["msp"])
    header = " ".join(f"rej@{c}" for c in coverages)
    print(f"  {'OOD set':16} {'score':7} {'AUROC':>6}  {header}")
    for name, entry in ood["sets"].items():
        for score in ("msp", "energy"):
            rates = " ".join(f"{100 * entry[f'rejection_{score}'][c]:>8.1f}" for c in coverages)
            print(f"  {name:16} {score:7} {100 * entry[f'auroc_{score}']:6.2f}  {rates}")
    for name, reason in ood["unavailable"].items():
        print(f"  {name:16} unavailable: {reason}")
    print_operating_point(meta)


def print_operating_point(meta: dict) -> None:
    """What the default operating point keeps and rejects (the issue's target table)."""
    rejection = meta.get("rejection")
    if not rejection:
        return
    at = rejection["at_default"]
    test, canvas = at["mnist_test"], at.get("canvas_digits")
    print(
        f"  operating point: keep {100 * rejection['default_keep']:.1f}% of validation digits "
        f"(calibrated confidence >= {rejection['threshold']:.6f}); MNIST test kept "
        f"{100 * test['kept']:.2f}% at {100 * test['accuracy_kept']:.2f}% accuracy"
        + (f"; canvas-drawn digits kept {100 * canvas['kept']:.2f}%" if canvas else "")
    )
    print("  rejected: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in at["sets"].items()))


if __name__ == "__main__":
    sys.exit(main())
