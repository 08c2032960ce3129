"""Train, evaluate and save every CNN variant into ``checkpoints/``.

Writes per variant: ``<variant>.safetensors`` (weights), ``<variant>.json`` (metadata and history),
``<variant>.eval.npz`` (test-set predictions) and ``<variant>.md`` (model card), then prints a
summary table. ``--dry-run`` trains on a few hundred images for one epoch into a temporary
directory, to check the whole pipeline in seconds.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.canvas_style import STROKES, stroke_mask
from core.checkpoints import DEFAULT_DIRECTORY, save_checkpoint
from core.data import DataUnavailableError, MnistSplits, load_mnist, normalization_stats
from core.models import REGISTRY, VARIANTS, count_parameters, layer_summary
from core.outliers import build_outlier_pool
from core.precompute import (
    CANVAS_SAMPLES,
    OOD_SAMPLES,
    build_canvas_digits,
    build_ood_sets,
    evaluate_variant,
)
from core.train import TrainConfig, fit
from scripts.evaluate_all import print_operating_point

DRY_RUN_TRAIN, DRY_RUN_VAL, DRY_RUN_TEST = 512, 256, 512
# Outlier-exposure pool: non-digit images built in code (core.outliers), once per run.
OUTLIER_POOL = 20_000
DRY_RUN_POOL = 256
DRY_RUN_OOD = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs for every variant (default: each variant's budget in core.models.REGISTRY: "
        + ", ".join(f"{name} {spec.epochs}" for name, spec in REGISTRY.items())
        + ")",
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for split, init, order, augmentation"
    )
    parser.add_argument(
        "--out-dir", type=Path, help=f"where to write (default: {DEFAULT_DIRECTORY})"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no per-epoch progress bars")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="one epoch on a few hundred images, written to a temporary directory",
    )
    return parser.parse_args(argv)


def synthetic_splits(seed: int) -> MnistSplits:
    """Stroke-drawn 0, 1, 4 and 7 at random sizes and places (``core.canvas_style``), so
    ``--dry-run`` checks the whole pipeline offline, in seconds, without MNIST."""
    rng = np.random.default_rng([seed, 99])
    digits = sorted(STROKES)
    n = DRY_RUN_TRAIN + DRY_RUN_VAL + DRY_RUN_TEST
    labels = np.array([digits[i % len(digits)] for i in range(n)])
    images = np.zeros((n, 28, 28), np.uint8)
    for i, digit in enumerate(labels):
        top, left = rng.uniform(2, 6), rng.uniform(4, 9)
        box = (left, top, left + rng.uniform(12, 16), top + rng.uniform(18, 22))
        ink = stroke_mask(int(digit), size=(28, 28), box=box, width=rng.uniform(1.5, 3.0))
        images[i] = np.round(ink * 255).astype(np.uint8)
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    a, b = DRY_RUN_TRAIN, DRY_RUN_TRAIN + DRY_RUN_VAL
    return MnistSplits(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


def shrink(splits: MnistSplits) -> MnistSplits:
    """A few hundred images of each split, for ``--dry-run``."""
    return MnistSplits(
        splits.train_images[:DRY_RUN_TRAIN],
        splits.train_labels[:DRY_RUN_TRAIN],
        splits.val_images[:DRY_RUN_VAL],
        splits.val_labels[:DRY_RUN_VAL],
        splits.test_images[:DRY_RUN_TEST],
        splits.test_labels[:DRY_RUN_TEST],
    )


def train_variant(
    variant: str,
    splits: MnistSplits,
    config: TrainConfig,
    out_dir: Path,
    progress: bool,
    ood: tuple[dict[str, np.ndarray], dict[str, str]],
    outliers: np.ndarray,
    canvas_digits: tuple[np.ndarray, np.ndarray],
) -> dict:
    """Train one variant, save its checkpoint, evaluate it; returns its final metadata.

    ``ood`` is :func:`build_ood_sets`'s result, ``outliers`` the outlier-exposure pool and
    ``canvas_digits`` :func:`build_canvas_digits`'s result, all built once for all variants.
    """
    normalization = normalization_stats(splits.train_images)
    torch.manual_seed(config.seed)  # initial weights depend on the seed, not on earlier variants
    model = REGISTRY[variant].build()
    print(
        f"\n== {variant}: {count_parameters(model):,} parameters, {config.epochs} epochs",
        flush=True,
    )

    def report(row: dict[str, float]) -> None:
        print(
            f"  epoch {row['epoch']:2d}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.4f}  val loss {row['val_loss']:.4f} "
            f"acc {row['val_accuracy']:.4f}  lr {row['lr']:.2e}  {row['seconds']:.0f}s",
            flush=True,
        )

    result = fit(
        model,
        splits.train_images,
        splits.train_labels,
        splits.val_images,
        splits.val_labels,
        normalization,
        config,
        progress=progress,
        on_epoch=report,
        outliers=torch.from_numpy(outliers),
    )
    metadata = {
        "params": count_parameters(model),
        "config": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in vars(REGISTRY[variant].config).items()
        },
        "architecture": layer_summary(model),
        "normalization": normalization,
        "test_accuracy": 0.0,
        "per_class": [],
        "history": result.history,
        "training": {
            "config": config.to_dict(),
            "seed": config.seed,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "stopped_early": result.stopped_early,
            "seconds": round(result.seconds, 1),
            "train_size": len(splits.train_images),
            "outlier_pool": {"size": len(outliers), "builder": "core.outliers.build_outlier_pool"},
            "val_size": len(splits.val_images),
            "device": "cuda" if torch.cuda.is_available() else f"cpu ({platform.machine()})",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    save_checkpoint(model, variant, metadata, out_dir)
    return evaluate_variant(
        variant,
        out_dir,
        splits.test_images,
        splits.test_labels,
        val_images=splits.val_images,
        val_labels=splits.val_labels,
        ood_sets=ood[0],
        ood_unavailable=ood[1],
        canvas_digits=canvas_digits,
    )


def print_summary(results: list[dict]) -> None:
    """Table of params, epochs, accuracy and training time per variant."""
    print(
        f"\n{'variant':8} {'params':>9} {'epochs':>6} {'val acc':>8} {'test acc':>9} {'ECE':>7} {'time':>7}"
    )
    for meta in results:
        training = meta["training"]
        print(
            f"{meta['variant']:8} {meta['params']:>9,} {training['epochs_run']:>6} "
            f"{100 * training['best_val_accuracy']:>7.2f}% {100 * meta['test_accuracy']:>8.2f}% "
            f"{meta['test_ece']:>7.4f} {training['seconds']:>6.0f}s"
        )
    print(f"total training time: {sum(m['training']['seconds'] for m in results):.0f} s")
    for meta in results:
        print(meta["variant"])
        print_operating_point(meta)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = args.out_dir or DEFAULT_DIRECTORY
    if args.dry_run:
        out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="digit-lens-dry-run-"))
    try:
        splits = load_mnist(args.data_dir, seed=args.seed)
    except DataUnavailableError as error:
        if not args.dry_run:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print("MNIST is not available here: the dry run uses synthetic stroke-drawn digits.")
        splits = synthetic_splits(args.seed)
    if args.dry_run:
        splits = shrink(splits)
    started = time.perf_counter()
    ood_size = DRY_RUN_OOD if args.dry_run else OOD_SAMPLES
    ood = build_ood_sets(n=ood_size, data_dir=args.data_dir)
    canvas_size = DRY_RUN_OOD if args.dry_run else CANVAS_SAMPLES
    canvas_digits = build_canvas_digits(splits.test_images, splits.test_labels, n=canvas_size)
    pool_started = time.perf_counter()
    outliers = build_outlier_pool(
        DRY_RUN_POOL if args.dry_run else OUTLIER_POOL,
        args.seed,
        splits.train_images.numpy(),
        splits.train_labels.numpy(),
    )
    print(f"outlier pool: {len(outliers):,} images in {time.perf_counter() - pool_started:.0f} s")
    results = []
    for variant in args.variants:
        spec = REGISTRY[variant]
        epochs = 1 if args.dry_run else (args.epochs or spec.epochs)
        config = replace(TrainConfig(), **dict(spec.training), epochs=epochs, seed=args.seed)
        results.append(
            train_variant(
                variant,
                splits,
                config,
                out_dir,
                not args.no_progress,
                ood,
                outliers,
                canvas_digits,
            )
        )
    print_summary(results)
    print(f"wall time: {time.perf_counter() - started:.0f} s; wrote {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
