"""Print training and inference speed and peak memory of every variant on this machine.

Each variant is measured in its own child process so its peak resident memory is its own.
Training throughput uses the real training step (augmentation, AdamW, OneCycleLR) on random
uint8 images, which cost the same as MNIST's; inference uses the shipped checkpoints.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, load_model
from core.inputs import MNIST_NORMALIZATION, to_input
from core.models import VARIANTS, build_model, count_parameters
from core.timing import time_calls
from core.train import TrainConfig, train_one_epoch

TRAIN_SIZE = 55_000
ROOT = Path(__file__).resolve().parent.parent


def measure_training(variant: str, images: int, batch_size: int) -> float:
    """Training images per second for one pass over ``images`` random images."""
    model = build_model(variant)
    config = TrainConfig(epochs=1, batch_size=batch_size)
    data = torch.randint(0, 256, (images, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (images,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1e-3, total_steps=2 * (images // batch_size + 1)
    )
    generator = torch.Generator().manual_seed(0)
    norm = MNIST_NORMALIZATION
    args = (model, optimizer, scheduler, data[:batch_size], labels[:batch_size], norm, config)
    train_one_epoch(*args, generator, torch.device("cpu"))  # warm-up
    started = time.perf_counter()
    train_one_epoch(
        model, optimizer, scheduler, data, labels, norm, config, generator, torch.device("cpu")
    )
    return images / (time.perf_counter() - started)


@torch.no_grad()
def measure_inference(variant: str, repeats: int) -> dict[str, float]:
    """Single-image latency percentiles and 1,000-image batch time (ms) of the shipped model."""
    model, meta = load_model(variant, DEFAULT_DIRECTORY)
    norm = meta["normalization"]
    single = to_input(torch.rand(1, 28, 28), norm)
    batch = to_input(torch.rand(1000, 28, 28), norm)
    single_timing = time_calls(lambda: model(single), repeats, warmup=20)
    batch_timing = time_calls(lambda: model(batch), 5, warmup=1)
    return {
        "p50_ms": single_timing.p50,
        "p95_ms": single_timing.p95,
        "batch1000_ms": batch_timing.p50,
    }


def child(variant: str, train_images: int, batch_size: int, repeats: int) -> dict:
    """All figures of one variant (run inside its own process)."""
    images_per_s = measure_training(variant, train_images, batch_size)
    result = {
        "variant": variant,
        "params": count_parameters(build_model(variant)),
        "train_img_s": images_per_s,
        "epoch_s": TRAIN_SIZE / images_per_s,
        "threads": torch.get_num_threads(),
    }
    try:
        result.update(measure_inference(variant, repeats))
    except CheckpointError as error:
        result["error"] = str(error)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    """Run every variant in a child process and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--train-images", type=int, default=5120, help="images per throughput run")
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--repeats", type=int, default=300, help="single-image latency samples")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.train_images, args.batch_size, args.repeats)))
        return 0
    print(
        f"{'variant':8} {'params':>9} {'train img/s':>11} {'s/epoch':>8} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'1k batch ms':>11} {'peak MB':>8}"
    )
    for variant in args.variants:
        command = [sys.executable, "-m", "scripts.benchmark", "--child", variant]
        command += ["--train-images", str(args.train_images), "--batch-size", str(args.batch_size)]
        command += ["--repeats", str(args.repeats)]
        out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if out.returncode != 0:
            print(f"{variant}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if "error" in r:
            print(f"{variant}: {r['error']}")
            continue
        print(
            f"{variant:8} {r['params']:>9,} {r['train_img_s']:>11.0f} {r['epoch_s']:>8.1f} "
            f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['batch1000_ms']:>11.1f} "
            f"{r['peak_rss_mb']:>8.0f}"
        )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
