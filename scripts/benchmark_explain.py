"""Time the explanation engine on the shipped checkpoints: Grad-CAM, activations, other methods.

Targets (issue 4): Grad-CAM for one image and one layer under 15 ms, all activations under 5 ms.
Prints p50/p95 per variant (and per conv layer for Grad-CAM) over ``--repeats`` calls after a
warm-up, on one MNIST test image (a drawn 7 when MNIST is not available).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, load_model
from core.data import DataUnavailableError, load_mnist_test
from core.explain import activations, attribute, conv_layer_names, gradcam
from core.faithfulness import edge_map, faithfulness, random_map
from core.inputs import to_input
from core.methods import METHODS
from core.models import VARIANTS
from core.sanity import cascading_randomization
from core.timing import time_calls

GRADCAM_TARGET_MS = 15.0
FAITHFULNESS_TARGET_MS = 300.0
ACTIVATIONS_TARGET_MS = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--slow-repeats", type=int, default=20, help="for IG/occlusion/sanity")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    return parser.parse_args(argv)


def sample_image(data_dir: str | None) -> tuple[torch.Tensor, str]:
    """uint8 ``[1, 28, 28]``: the first MNIST test image, else a drawn 7."""
    try:
        images, labels = load_mnist_test(data_dir)
        return images[:1], f"MNIST test image 0 (label {int(labels[0])})"
    except DataUnavailableError:
        canvas = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(canvas).line([(8, 7), (20, 7), (13, 22)], fill=255, width=3)
        return torch.from_numpy(np.array(canvas))[None], "a drawn 7 (MNIST not available)"


def benchmark_variant(
    model: torch.nn.Module, normalization: dict[str, float], image: torch.Tensor, args
) -> None:
    """Print the timing table of one loaded model."""
    x = to_input(image, normalization)
    with torch.no_grad():
        target = int(model(x).argmax())
    layers = conv_layer_names(model)
    print(f"  (predicts {target})")
    timing = time_calls(partial(activations, model, x), args.repeats)
    print(timing.row("all activations", ACTIVATIONS_TARGET_MS))
    for layer in layers:
        ms = time_calls(partial(gradcam, model, x, layer, target), args.repeats)
        print(ms.row(f"Grad-CAM {layer}", GRADCAM_TARGET_MS))
    for method in (spec for spec in METHODS.values() if not spec.needs_layer):
        repeats = args.repeats if method.key == "saliency" else args.slow_repeats
        call = partial(attribute, model, x, method.key, target, normalization=normalization)
        print(time_calls(call, repeats, warmup=2).row(method.label))
    layer = layers[-1] if layers else None
    if layer is not None:
        call = partial(cascading_randomization, model, x, "gradcam", target, layer=layer)
        ms = time_calls(call, args.slow_repeats, warmup=2)
        print(ms.row(f"sanity check (Grad-CAM, {len(layers) + 2} layers)"))
    image01 = image[0].float().numpy() / (255.0 if image.dtype == torch.uint8 else 1.0)
    maps = {
        key: attribute(
            model, x, key, target, layer=layer if m.needs_layer else None,
            normalization=normalization,
        )
        for key, m in METHODS.items()
        if layer is not None or not m.needs_layer
    }  # fmt: skip
    maps["random"], maps["edges"] = random_map(), edge_map(image01)
    for road in (False, True):
        call = partial(faithfulness, model, image01, target, maps, normalization, road=road)
        label = (
            f"faithfulness of {len(maps)} maps ({'with ROAD' if road else 'deletion + insertion'})"
        )
        target_ms = None if road else FAITHFULNESS_TARGET_MS
        print(time_calls(call, args.slow_repeats, warmup=1).row(label, target_ms))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image, description = sample_image(args.data_dir)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; input: {description}; "
        f"{args.repeats} timed calls (IG/occlusion/sanity: {args.slow_repeats})"
    )
    for variant in args.variants:
        try:
            model, metadata = load_model(variant, args.checkpoints)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"\n{variant}:")
        benchmark_variant(model, metadata["normalization"], image, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
