"""How digit-like are the out-of-distribution images each model still accepts?

For every CNN and OOD set, the images accepted at the default operating point are compared with
MNIST's 60,000 training digits in pixel space: the share of them that lies closer to some
training digit than 95% of the real test digits lie to theirs. A high share means the accepted
images look like real digits (one random stroke is often a plausible 1 or 7), so rejecting them
would mean rejecting real digits too; a low share means the model is missing easy cases. For
the scribbles, the share rejected by number of strokes (one random stroke is often a digit). Then,
from the shipped evaluation files, what the 95% rejection target would cost: the share of MNIST
test digits and of canvas-drawn digits a threshold still keeps once it rejects 95% of the set.

Usage: ``uv run python scripts/ood_digit_likeness.py [--sets scribbles letters]`` (needs MNIST;
about a minute).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from core.data import DataUnavailableError, load_mnist
from core.evalfile import EvalFileError, read_eval_file
from core.evaluate import softmax
from core.models import REGISTRY
from core.ood import (
    OOD_LABELS,
    OOD_SETS,
    OODDataUnavailableError,
    load_ood_set,
    scribble_stroke_counts,
)
from core.outliers import DigitBank
from core.precompute import OOD_SAMPLES, OOD_SEED
from core.predict import Predictor
from core.selective import is_rejected, kept_at_rejection

TARGET = 0.95


def main(argv: list[str] | None = None) -> int:
    """Print one line per model and set; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--sets", nargs="+", choices=OOD_SETS, default=["scribbles", "letters"])
    args = parser.parse_args(argv)
    try:
        splits = load_mnist(args.data_dir)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bank = DigitBank(splits.train_images.numpy())
    reference = bank.nearest_distances(splits.test_images.numpy()[:OOD_SAMPLES])
    cut = float(np.percentile(reference, 95))
    print(f"real test digits: nearest training digit at {np.median(reference):.2f} (median), "
          f"{cut:.2f} (95th percentile)")  # fmt: skip
    cnns = [name for name, spec in REGISTRY.items() if spec.conv_blocks]
    predictor = Predictor(cnns)
    for name in args.sets:
        try:
            images = np.array(load_ood_set(name, OOD_SAMPLES, OOD_SEED, args.data_dir))
        except OODDataUnavailableError as error:
            print(f"{OOD_LABELS[name]}: skipped ({error})")
            continue
        distances = bank.nearest_distances(images)
        for variant in cnns:
            confidence = predictor.predict_batch(images, variant).max(1)
            accepted = ~is_rejected(confidence, predictor.threshold_for(variant))
            if not accepted.any():
                print(f"{OOD_LABELS[name]:18} {variant}: none accepted")
                continue
            print(
                f"{OOD_LABELS[name]:18} {variant}: {accepted.mean():6.1%} accepted; of those, "
                f"{(distances[accepted] <= cut).mean():4.0%} lie as close to a training digit as "
                f"95% of real digits do (median distance {np.median(distances[accepted]):.2f}; "
                f"the rejected ones {np.median(distances[~accepted]):.2f})"
            )
        if name == "scribbles":
            print_rejected_by_strokes(predictor, cnns, images)
    print_target_cost(cnns, args.sets)
    return 0


def print_rejected_by_strokes(
    predictor: Predictor, variants: list[str], images: np.ndarray
) -> None:
    """The share of scribbles each model rejects, by how many random strokes they have."""
    strokes = scribble_stroke_counts(len(images), OOD_SEED)
    for variant in variants:
        confidence = predictor.predict_batch(images, variant).max(1)
        rejected = is_rejected(confidence, predictor.threshold_for(variant))
        shares = ", ".join(
            f"{count} stroke{'s' * (count > 1)} {rejected[strokes == count].mean():6.1%} "
            f"(of {(strokes == count).sum()})"
            for count in np.unique(strokes)
        )
        print(f"{'  rejected, by strokes':18} {variant}: {shares}")


def print_target_cost(variants: list[str], sets: list[str]) -> None:
    """What rejecting :data:`TARGET` of each set would cost in real digits, per model."""
    print(f"\nto reject {TARGET:.0%} of a set, a threshold would keep only:")
    for variant in variants:
        try:
            evaluation = read_eval_file(variant)
        except (EvalFileError, OSError) as error:
            print(f"{variant}: no evaluation file ({error})")
            continue
        t = evaluation.temperature
        mnist = softmax(evaluation.logits.astype(np.float64), t).max(1)
        canvas = None
        if evaluation.canvas_logits is not None:
            canvas = softmax(evaluation.canvas_logits.astype(np.float64), t).max(1)
        for name in sets:
            if name not in evaluation.ood:
                continue
            out = softmax(evaluation.ood[name].logits.astype(np.float64), t).max(1)
            line = f"{OOD_LABELS[name]:30} {variant}: {kept_at_rejection(mnist, out, TARGET):6.1%} of MNIST test digits"
            if canvas is not None:
                line += f", {kept_at_rejection(canvas, out, TARGET):6.1%} of canvas-drawn digits"
            print(line)


if __name__ == "__main__":
    sys.exit(main())
