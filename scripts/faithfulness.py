"""Faithfulness of every attribution method on a fixed subset of MNIST test digits, per model.

Writes ``checkpoints/faithfulness.json`` (deterministic): per model, method and conv layer the
mean deletion AUC (lower = more faithful) and insertion AUC (higher) on 15-point curves (the page uses the same), ROAD
combined (higher) on the first 200 digits and the randomisation ρ of the sanity check (pass below
0.5) on the first 100, beside a random and an edge map. Prints the table the README shows. Needs
MNIST's test set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, atomic_write_text, load_model
from core.data import DataUnavailableError, load_mnist_test
from core.faithfulness import dataset_faithfulness
from core.models import REGISTRY, VARIANTS

OUTPUT = "faithfulness.json"
SUBSET = 1000
SUBSET_SEED = 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--images", type=int, default=SUBSET, help="test digits per model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    try:
        images, _ = load_mnist_test(args.data_dir)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    index = np.sort(
        np.random.default_rng(SUBSET_SEED).choice(len(images), args.images, replace=False)
    )
    subset = images.numpy()[index]
    path = args.checkpoints / OUTPUT
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update({"subset_seed": SUBSET_SEED, "test_indices": index.tolist()})
    models = result.setdefault("models", {})
    for variant in args.variants:
        started = time.perf_counter()
        try:
            model, metadata = load_model(variant, args.checkpoints)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        models[variant] = dataset_faithfulness(model, subset, metadata["normalization"])
        print_table(variant, models[variant], time.perf_counter() - started)
        # Written after every model, so a long run keeps what it finished.
        result["models"] = {v: models[v] for v in REGISTRY if v in models}
        atomic_write_text(path, json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}", flush=True)
    return 0


def print_table(variant: str, entry: dict, seconds: float) -> None:
    """Per method: deletion, insertion, ROAD, randomisation ρ and the sanity verdict."""
    print(f"\n{variant} ({entry['images']} test digits, {seconds:.0f} s)", flush=True)
    print(f"  {'method':40} {'deletion':>9} {'insertion':>9} {'ROAD':>7} {'rand. ρ':>8}  sanity")
    for name, scores in sorted(entry["methods"].items(), key=lambda kv: kv[1]["deletion_auc"]):
        rho = scores.get("randomisation_rho")
        verdict = "" if rho is None else ("pass" if scores["sanity_passed"] else "FAIL")
        print(
            f"  {name:40} {scores['deletion_auc']:9.3f} {scores['insertion_auc']:9.3f} "
            f"{scores['road']:7.3f} {'' if rho is None else f'{rho:+8.2f}'}  {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
