"""Precompute every model's embedding map and neighbour bank: ``checkpoints/embedding_<v>.npz``.

For each variant: the features (input of the last dense layer) of the 10,000 MNIST test digits
and of a seeded subset of its training split, their PCA basis, the bank in that basis (float16)
and a t-SNE layout of the test digits (float16). Deterministic: the same bytes every run (one
intra-op thread, fixed zip timestamps). Prints the time and file size per model.

Usage: ``python scripts/embedding.py [--variants cnn3 mlp] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, atomic_write_bytes, load_model
from core.data import DataUnavailableError, MnistSplits, load_mnist
from core.embedding import BANK_DIMS, TRAIN_BANK_SIZE, compute_embedding, embedding_path, npz_bytes
from core.models import VARIANTS


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 when MNIST or a checkpoint is missing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--train-bank", type=int, default=TRAIN_BANK_SIZE, metavar="N")
    parser.add_argument("--dims", type=int, default=BANK_DIMS, metavar="K")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the same reduction order every run: the same bytes
    splits: dict[int, MnistSplits] = {}
    for variant in args.variants:
        started = time.perf_counter()
        try:
            model, metadata = load_model(variant, args.checkpoints)
        except CheckpointError as error:
            print(f"error: {variant}: {error}", file=sys.stderr)
            return 2
        seed = int(metadata["training"]["seed"])
        if seed not in splits:
            try:
                splits[seed] = load_mnist(args.data_dir, seed=seed)
            except DataUnavailableError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        data = splits[seed]
        found = compute_embedding(
            model,
            metadata,
            (data.test_images.numpy(), data.test_labels.numpy()),
            (data.train_images.numpy(), data.train_labels.numpy()),
            train_size=args.train_bank,
            dims=args.dims,
        )
        blob = npz_bytes(found.to_arrays())
        path = embedding_path(variant, args.checkpoints)
        atomic_write_bytes(path, blob)
        print(
            f"{variant:7} {time.perf_counter() - started:6.1f} s  {len(blob) / 1e6:5.2f} MB  "
            f"{found.pca.variance_ratio.sum():.1%} of the variance in {len(found.pca.variance_ratio)}"
            f" dims  sha256 {hashlib.sha256(blob).hexdigest()[:12]}  → {path}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
