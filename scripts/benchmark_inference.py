"""Benchmark the input path: preprocessing a canvas, predicting with all models, canvas accuracy.

Prints p50/p95 latencies (milliseconds) of

* preprocessing a 280×280 RGBA canvas (transparent background, the dashboard's default; also a
  white-background canvas and a 1024×768 JPEG photo for reference),
* predicting one preprocessed digit with all three models, and the whole canvas → predictions,

then, when MNIST is present, the accuracy of each variant on MNIST test digits drawn
canvas-style (``tests.imagefactory.render_mnist_canvas``) through the full pipeline, next to
its direct accuracy on the same digits and the checkpoint's recorded test accuracy.

Targets (issue 3): preprocessing p50 < 5 ms; predicting with all three < 5 ms more; canvas-style
accuracy within 0.5 points of direct accuracy.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.canvas_style import canvas_rgba, canvas_style_accuracy, paper_photo, stroke_mask
from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError
from core.data import DataUnavailableError, load_mnist_test
from core.predict import Predictor
from core.preprocess import preprocess
from core.timing import Timing, time_calls


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per figure")
    parser.add_argument(
        "--digits",
        type=int,
        default=10_000,
        help="MNIST test digits for the canvas-style accuracy (0 skips it; default: all)",
    )
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--seed", type=int, default=0, help="seed for picking and rendering digits")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1, as the dashboard sets; 0 keeps torch's choice)",
    )
    return parser.parse_args(argv)


def row(name: str, timing: Timing) -> None:
    """Print one table line."""
    print(timing.row(name, width=52), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    canvas = canvas_rgba(stroke_mask(7, box=(60, 40, 200, 240), width=18))
    white = canvas_rgba(stroke_mask(7, box=(60, 40, 200, 240), width=18), transparent=False)
    ink = stroke_mask(4, size=(1024, 768), box=(400, 200, 620, 560), width=14, supersample=1)
    buffer = io.BytesIO()
    Image.fromarray(paper_photo(ink)).save(buffer, format="JPEG", quality=90)
    photo = buffer.getvalue()

    print("\npreprocessing")
    row(
        "280×280 RGBA canvas, transparent background",
        time_calls(lambda: preprocess(canvas), args.repeats),
    )
    row(
        "280×280 RGBA canvas, white background", time_calls(lambda: preprocess(white), args.repeats)
    )
    row(
        "1024×768 JPEG photo (bytes: decode + preprocess)",
        time_calls(lambda: preprocess(photo), 50),
    )

    try:
        predictor = Predictor(directory=args.checkpoints)
    except CheckpointError as error:
        print(f"\nno predictions: {error}")
        return 1
    result = preprocess(canvas)
    print("\nprediction (one digit, calibrated)")
    row(
        "every model, default operating point",
        time_calls(lambda: predictor.predict(result), args.repeats),
    )
    row(
        "every model, rejection off",
        time_calls(lambda: predictor.predict(result, 0.0), args.repeats),
    )
    for variant in predictor.models:
        with_rejection = time_calls(
            lambda v=variant: predictor.predict(result, variants=[v]), args.repeats
        )
        without = time_calls(
            lambda v=variant: predictor.predict(result, 0.0, variants=[v]), args.repeats
        )
        row(f"{variant} alone, with rejection", with_rejection)
        print(f"    rejection adds {with_rejection.p50 - without.p50:+.3f} ms (p50) to {variant}")
    row(
        "canvas → preprocess → every model",
        time_calls(lambda: predictor.predict(preprocess(canvas)), args.repeats),
    )

    if args.digits <= 0:
        return 0
    try:
        images, labels = load_mnist_test(args.data_dir)
    except DataUnavailableError as error:
        print(f"\nno canvas-style accuracy: {error}")
        return 0
    count = min(args.digits, len(images))
    pick = (
        np.arange(count)
        if count == len(images)
        else np.random.default_rng(args.seed).choice(len(images), count, replace=False)
    )
    start = time.perf_counter()
    figures = canvas_style_accuracy(
        predictor, images.numpy()[pick], labels.numpy()[pick], seed=args.seed
    )
    seconds = time.perf_counter() - start
    print(f"\ncanvas-style accuracy on {count} MNIST test digits ({seconds:.0f} s)")
    print(f"  {'variant':<8} {'canvas':>8} {'direct':>8} {'gap':>7} {'recorded':>9}  target")
    for variant, f in figures.items():
        gap = (f["direct"] - f["canvas"]) * 100
        recorded = predictor.metadata[variant]["test_accuracy"]
        verdict = "ok" if gap <= 0.5 else "MISSED"
        print(
            f"  {variant:<8} {f['canvas']:8.2%} {f['direct']:8.2%} {gap:6.2f}p "
            f"{recorded:9.2%}  {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
