"""Cached results and pictures of the "What each unit does" page.

The computations are :mod:`core.units`'; this module caches them per image, model, layer and
channel with the checkpoint directory's signature in every key (ARCHITECTURE.md, caching), and
turns arrays into figures and small tables. The figures are pure functions of arrays.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core import unit_stats as unit_stats_module
from core import units
from core.inputs import image_to_input
from dashboard import loaders, unit_figures


def _directory() -> tuple[str, tuple]:
    directory = loaders.checkpoint_dir()
    return directory, loaders.directory_signature(directory)


def _model_input(image: np.ndarray, variant: str, directory: str, signature: tuple) -> tuple:
    model, metadata = loaders.cached_model(variant, directory, signature)
    return model, image_to_input(image, metadata["normalization"])


@st.cache_data(max_entries=16, show_spinner=False)
def _layer_rows(variant: str, directory: str, signature: tuple) -> list[units.LayerRow]:
    return units.layer_rows(loaders.cached_model(variant, directory, signature)[0])


def layer_rows(variant: str) -> list[units.LayerRow]:
    """Every layer of a model: output shape, parameters, receptive field."""
    return _layer_rows(variant, *_directory())


def _activations(rows: list[units.LayerRow]) -> list[units.LayerRow]:
    return [row for row in rows if row.name.startswith("features.") and row.kind == "LeakyReLU"]


def activation_rows(variant: str) -> list[units.LayerRow]:
    """The conv blocks' activation maps (where units live), input to output."""
    return _activations(layer_rows(variant))


@st.cache_data(max_entries=8, show_spinner=False)
def _unit_stats(variant: str, directory: str, signature: tuple) -> unit_stats_module.UnitStats:
    rows = _activations(_layer_rows(variant, directory, signature))
    return unit_stats_module.read_unit_stats(variant, directory, [row.output_shape for row in rows])


def unit_stats(variant: str) -> unit_stats_module.UnitStats:
    """The precomputed top-9 digits and class means (``UnitsFileError`` when missing or bad)."""
    return _unit_stats(variant, *_directory())


def unit_weights(variant: str, layer: int, channel: int) -> units.UnitWeights:
    """A unit's kernel slices and BatchNorm (read from the loaded model: no cache needed)."""
    return units.unit_weights(loaders.model_and_metadata(variant)[0], layer, channel)


def temperature(variant: str) -> float:
    """The checkpoint's calibration temperature (1.0 when it has none)."""
    return float(loaders.model_and_metadata(variant)[1].get("temperature", 1.0))


@st.cache_data(max_entries=256, show_spinner=False)
def _arithmetic(
    image: np.ndarray,
    variant: str,
    layer: int,
    channel: int,
    cell: tuple[int, int],
    directory: str,
    signature: tuple,
) -> units.CellArithmetic:
    model, x = _model_input(image, variant, directory, signature)
    return units.cell_arithmetic(model, x, layer, channel, cell)


def arithmetic(
    image: np.ndarray, variant: str, layer: int, channel: int, cell: tuple[int, int]
) -> units.CellArithmetic:
    """One cell of a unit's map worked out by hand (cached)."""
    return _arithmetic(image, variant, layer, channel, tuple(map(int, cell)), *_directory())


@st.cache_data(max_entries=64, show_spinner=False)
def _head(
    image: np.ndarray, variant: str, temp: float, directory: str, signature: tuple
) -> units.HeadArithmetic:
    model, x = _model_input(image, variant, directory, signature)
    return units.head_arithmetic(model, x, temp)


def head(image: np.ndarray, variant: str) -> units.HeadArithmetic:
    """The dense head worked out, with raw and calibrated softmax (cached)."""
    return _head(image, variant, temperature(variant), *_directory())


@st.cache_data(max_entries=256, show_spinner=False)
def _ablated(
    image: np.ndarray,
    variant: str,
    layer: int,
    channels: tuple[int, ...],
    directory: str,
    signature: tuple,
) -> np.ndarray:
    model, x = _model_input(image, variant, directory, signature)
    return units.ablate(model, x, layer, list(channels))


def ablated_logits(image: np.ndarray, variant: str, layer: int, channels: list[int]) -> np.ndarray:
    """Logits with ``channels`` of ``layer`` switched off (cached per set of channels)."""
    return _ablated(image, variant, layer, tuple(sorted(map(int, channels))), *_directory())


@st.cache_data(max_entries=64, show_spinner=False)
def _ranking(
    image: np.ndarray, variant: str, layer: int, directory: str, signature: tuple
) -> units.ChannelRanking:
    model, x = _model_input(image, variant, directory, signature)
    return units.channel_ranking(model, x, layer)


def ranking(image: np.ndarray, variant: str, layer: int) -> units.ChannelRanking:
    """Channels of ``layer`` by the predicted logit's drop when each is off alone (cached)."""
    return _ranking(image, variant, layer, *_directory())


def top_digits(
    stats: unit_stats_module.LayerStats, row: units.LayerRow, channel: int
) -> list[tuple[np.ndarray, str]]:
    """The unit's 9 most exciting test digits, the peak's receptive field outlined in red, with
    captions; ``DataUnavailableError`` when MNIST is absent."""
    test_images, labels = loaders.mnist_test()
    pictures = []
    for index, value, cell in zip(
        stats.top_index[channel], stats.top_value[channel], stats.top_cell[channel], strict=True
    ):
        box = units.receptive_box(row, (int(cell[0]), int(cell[1])))
        caption = f"#{index} · a {labels[index]} · peak {value:.2f} at {tuple(map(int, cell))}"
        pictures.append((unit_figures.marked_digit(test_images[index], box), caption))
    return pictures


# --------------------------------------------------------------------------- pictures, tables
