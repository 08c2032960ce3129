"""Accuracy of every shipped model on shifted, rotated and canvas-drawn MNIST test digits.

Writes ``checkpoints/robustness.json`` (deterministic: the same bytes every run) and prints the
table the README shows. Needs MNIST's test set (``--data-dir`` or ``$DIGIT_LENS_DATA``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, atomic_write_text, load_model
from core.data import DataUnavailableError, load_mnist_test
from core.models import VARIANTS
from core.precompute import build_canvas_digits
from core.robustness import ROTATIONS, SHIFTS, robustness_curves

OUTPUT = "robustness.json"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        images, labels = load_mnist_test(args.data_dir)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    canvas = build_canvas_digits(images, labels)
    images_np, labels_np = images.numpy(), labels.numpy()
    curves = {}
    for variant in args.variants:
        try:
            model, metadata = load_model(variant, args.checkpoints)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        curves[variant] = robustness_curves(
            model, metadata["normalization"], images_np, labels_np, canvas
        )
    result = {
        "description": "accuracy on MNIST test digits shifted by N pixels in a per-digit compass "
        "direction, rotated by N degrees (per-digit sign), and on canvas-style digits",
        "test_images": len(labels_np),
        "canvas_images": len(canvas[1]),
        "shifts": list(SHIFTS),
        "rotations": list(ROTATIONS),
        "models": curves,
    }
    atomic_write_text(args.checkpoints / OUTPUT, json.dumps(result, indent=2) + "\n")
    print(f"{'model':8} " + " ".join(f"shift{s:>2}" for s in SHIFTS) + "  "
          + " ".join(f"rot{a:>3}" for a in ROTATIONS) + "  canvas")  # fmt: skip
    for variant, curve in curves.items():
        shifts = " ".join(f"{100 * curve['shift'][str(s)]:7.2f}" for s in SHIFTS)
        rotations = " ".join(f"{100 * curve['rotation'][str(a)]:6.2f}" for a in ROTATIONS)
        print(f"{variant:8} {shifts}  {rotations}  {100 * curve['canvas']:6.2f}")
    print(f"{time.perf_counter() - started:.0f} s; wrote {args.checkpoints / OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
