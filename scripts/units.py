"""Precompute what each conv unit does on the MNIST test set, for every CNN of the registry.

Writes ``checkpoints/units_<variant>.npz`` (deterministic, a few KB): per unit of every conv
layer, the 9 test digits with the highest peak activation (test index, peak value, peak cell)
and the mean activation per digit class, tagged with the weights' sha256. The "What each unit
does" page reads them. Needs MNIST's test set; prints the time and file size per model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, load_model
from core.data import DataUnavailableError, load_mnist_test
from core.models import REGISTRY
from core.unit_stats import precompute, units_path, write_unit_stats

CNNS = [name for name, spec in REGISTRY.items() if spec.conv_blocks > 0]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=CNNS, default=CNNS)
    parser.add_argument("--images", type=int, help="only the first N test digits (for a check)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    try:
        images, labels = load_mnist_test(args.data_dir)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images, labels = images.numpy()[: args.images], labels.numpy()[: args.images]
    for variant in args.variants:
        started = time.perf_counter()
        try:
            model, metadata = load_model(variant, args.checkpoints)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        stats = precompute(model, images, labels, metadata["normalization"], metadata["sha256"])
        path = units_path(variant, args.checkpoints)
        write_unit_stats(path, stats)
        seconds = time.perf_counter() - started
        units = sum(len(layer.top_index) for layer in stats.layers)
        print(
            f"{variant}: {units} units over {len(images):,} test digits in {seconds:.1f} s; "
            f"wrote {path} ({path.stat().st_size / 1024:.1f} KB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
