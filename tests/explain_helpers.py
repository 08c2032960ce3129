"""Shared inputs for the explain/sanity tests: synthetic digits and seeded untrained models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from core.inputs import MNIST_NORMALIZATION, to_input
from core.models import build_model

NORMALIZATION = MNIST_NORMALIZATION


def drawn_digit(kind: str = "seven", shift: int = 0) -> np.ndarray:
    """A 28×28 uint8 MNIST-like digit drawn with PIL (white strokes on black)."""
    canvas = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "seven":
        draw.line([(8 + shift, 7), (20 + shift, 7), (13 + shift, 22)], fill=255, width=3)
    elif kind == "zero":
        draw.ellipse([(8 + shift, 5), (19 + shift, 22)], outline=255, width=3)
    else:
        draw.line([(14 + shift, 5), (14 + shift, 22)], fill=255, width=3)
    return np.array(canvas, np.uint8)


def digit_input(kind: str = "seven", shift: int = 0) -> torch.Tensor:
    """Normalised ``[1, 1, 28, 28]`` tensor of :func:`drawn_digit`."""
    return to_input(torch.from_numpy(drawn_digit(kind, shift))[None], NORMALIZATION)


def digit_batch() -> torch.Tensor:
    """Six different normalised digits ``[6, 1, 28, 28]``."""
    return torch.cat(
        [digit_input(kind, shift) for kind in ("seven", "zero", "one") for shift in (-2, 2)]
    )


def seeded_model(variant: str, seed: int = 0) -> nn.Module:
    """An untrained model with seeded weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(variant)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def hook_count(model: nn.Module) -> int:
    """All module hooks of every kind registered anywhere in ``model``."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        + len(getattr(m, "_forward_hooks_with_kwargs", {}))
        for m in model.modules()
    )


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Single-threaded torch for the block: on a busy 2-core machine, intra-op threads waiting
    for each other make single-image attributions an order of magnitude slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
