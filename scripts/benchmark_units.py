"""Time every interaction of the "What each unit does" page, server side (target: 100 ms each).

1. **Uncached work per interaction**, per model (and per layer where it depends on it): what a
   rerun computes when the choice is new: read the units file, show a unit (weights, kernel
   figure, top-9 pictures, class means), enter a cell (arithmetic, tables, clickable map), the
   dense head, switch three channels off, rank every channel, the layer summary. Figures are
   serialised as Streamlit sends them.
2. **Whole script reruns** with ``streamlit.testing.v1.AppTest`` after each interaction (upper
   bounds: AppTest parses every element). Skip them with ``--no-page``.

Usage: ``python scripts/benchmark_units.py [--repeats N] [--checkpoints DIR] [--no-page]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import plotly.io
import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, load_model
from core.data import DataUnavailableError, load_mnist_test
from core.evaluate import softmax
from core.inputs import to_input
from core.models import REGISTRY
from core.timing import time_calls
from core.unit_stats import read_unit_stats
from core.units import (
    ablate,
    activation_rows,
    cell_arithmetic,
    channel_ranking,
    head_arithmetic,
    layer_rows,
    receptive_box,
    unit_weights,
)
from dashboard import charts, unit_figures

TARGET_MS = 100.0
ROOT = Path(__file__).resolve().parent.parent
CNNS = [name for name, spec in REGISTRY.items() if spec.conv_blocks > 0]


def serialised(figure: object) -> str:
    """A figure as Streamlit sends it."""
    return plotly.io.to_json(figure, validate=False)


def show_unit(model, layer_stats, geometry, images: np.ndarray, layer: int, channel: int) -> None:
    """A unit newly picked: weights, kernel figure, class means, the 9 marked test digits."""
    weights = unit_weights(model, layer, channel)
    serialised(unit_figures.kernel_figure(weights))
    serialised(unit_figures.class_mean_figure(layer_stats.class_mean[channel]))
    cells = layer_stats.top_cell[channel]
    for index, cell in zip(layer_stats.top_index[channel], cells, strict=True):
        box = receptive_box(geometry, (int(cell[0]), int(cell[1])))
        unit_figures.marked_digit(images[index], box)


def enter_cell(model, x: torch.Tensor, layer: int, channel: int, shape: tuple[int, ...]) -> None:
    """A cell newly entered: its arithmetic, the tables and the clickable map."""
    cell = (shape[1] // 2, shape[2] // 2)
    result = cell_arithmetic(model, x, layer, channel, cell)
    unit_figures.arithmetic_lines(result, result.cell.activation)
    unit_figures.cell_grids(result, 0)
    unit_figures.contribution_table(result)
    serialised(unit_figures.cell_map_figure(np.zeros(shape[1:]), cell))


def switch_off(model, x: torch.Tensor, layer: int, temperature: float) -> None:
    """Three channels switched off: the ablated logits and the probability chart."""
    before = softmax(ablate(model, x, layer, []), temperature)
    after = softmax(ablate(model, x, layer, [0, 1, 2]), temperature)
    serialised(charts.probability_figure({"all on": before, "switched off": after}))


def interactions(model: torch.nn.Module, metadata: dict, variant: str, args) -> None:
    """Print the uncached work of every interaction for one model."""
    images = args.mnist[0]
    x = to_input(torch.from_numpy(images[:1]), metadata["normalization"])
    maps = activation_rows(model)
    shapes = [row.output_shape for row in maps]
    temperature = float(metadata.get("temperature", 1.0))

    def row(label: str, call: Callable[[], object]) -> None:
        print(time_calls(call, args.repeats, warmup=3).row(label, TARGET_MS))

    row("open: read the units file", partial(read_unit_stats, variant, args.checkpoints, shapes))
    stats = read_unit_stats(variant, args.checkpoints, shapes)
    for layer, geometry in enumerate(maps):
        name = f"layer {layer + 1}:"
        unit = partial(show_unit, model, stats.layers[layer], geometry, images, layer, 0)
        row(f"{name} show a unit (weights, top 9, means)", unit)
        row(
            f"{name} enter a cell (arithmetic + map)",
            partial(enter_cell, model, x, layer, 0, shapes[layer]),
        )
        row(f"{name} switch 3 channels off", partial(switch_off, model, x, layer, temperature))
        row(f"{name} rank all channels", partial(channel_ranking, model, x, layer))
    row("dense head (logits, softmax raw and /T)", partial(head_arithmetic, model, x, temperature))
    row("layer summary", lambda: unit_figures.layer_table(layer_rows(model)))


def page_reruns(variant: str, image: np.ndarray, repeats: int) -> None:
    """Time whole-script reruns after each interaction on the page (AppTest)."""
    from streamlit.testing.v1 import AppTest

    from dashboard import state, widgets

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.session_state[state.INPUT_KEY] = state.CurrentInput.from_image(image, "sample", "test 0")
    at.session_state[widgets.MODEL_KEY] = variant
    at.switch_page("views/units.py").run()
    counter = iter(range(10**6))

    def channel() -> None:
        at.number_input(key=f"dl.units.channel.{variant}.0").set_value(next(counter) % 8).run()

    def cell() -> None:
        at.number_input(key=f"dl.units.row.{variant}.0").set_value(next(counter) % 20).run()

    def switch_off() -> None:
        at.multiselect(key=f"dl.units.off.{variant}.0").set_value([next(counter) % 8]).run()

    for label, call in (("channel", channel), ("cell", cell), ("switch off", switch_off)):
        timing = time_calls(call, repeats, warmup=2)
        print(timing.row(f"page rerun after: {label} (AppTest, upper bound)"))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--variants", nargs="+", choices=CNNS, default=CNNS)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per interaction")
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGIT_LENS_DATA or ./data)")
    parser.add_argument("--no-page", action="store_true", help="skip the AppTest reruns")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the dashboard (dashboard.loaders)
    try:
        images, labels = load_mnist_test(args.data_dir)
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.mnist = (images.numpy(), labels.numpy())
    print(f"torch {torch.__version__}, 1 thread; MNIST test digit 0; {args.repeats} timed calls")
    for variant in args.variants:
        try:
            model, metadata = load_model(variant, args.checkpoints)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"\n{variant}:")
        interactions(model, metadata, variant, args)
        if not args.no_page:
            page_reruns(variant, args.mnist[0][0], max(5, args.repeats // 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
