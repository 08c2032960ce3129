"""What each conv unit does: its weights, the arithmetic of one activation, ablations, statistics.

A *unit* is one output channel of a conv block (``features.block<i>``: conv → BatchNorm →
LeakyReLU → max-pool → dropout). Layers are numbered from 0, input to output, as
:func:`core.models.conv_layers` lists them; "the activation" is the block's LeakyReLU output,
the map the Activations page shows. Inputs are normalised ``[1, 1, 28, 28]`` tensors. Whatever
runs or hooks the shared model holds :func:`core.locks.model_lock` with every module in eval mode.

The test-set statistics (top-9 digits per unit, mean activation per class) are precomputed by
``scripts/units.py`` into ``checkpoints/units_<variant>.npz``: test indices, peak values and peak
cells only, never images. :func:`read_unit_stats` reads them back bounded, without pickle, and
validated against the model's shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.checkpoints import CheckpointError
from core.evaluate import softmax
from core.locks import locked_eval
from core.models import conv_layers, layer_summary

TOP = 9
NUM_CLASSES = 10
MAX_UNITS_BYTES = 2**20
RUN_HINT = "run `python scripts/units.py` to compute it"


class UnitsFileError(CheckpointError):
    """A units file is missing, unreadable or does not fit the model's layers."""


def conv_block(model: nn.Module, layer: int) -> nn.Module:
    names = list(conv_layers(model))
    if not 0 <= layer < len(names):
        raise ValueError(f"Layer {layer} does not exist: this model has {len(names)} conv layers.")
    return model.get_submodule(names[layer].rpartition(".")[0])


def _pair(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else int(value[0])


# --------------------------------------------------------------------------- layer geometry


@dataclass(frozen=True)
class LayerRow:
    """One layer: output shape, parameters, and where its cells look in the 28×28 input.

    ``receptive_field`` is the side (pixels) of the input square one output cell depends on (None
    from the flatten on: every input pixel); neighbouring cells are ``jump`` pixels apart and
    cell 0 is centred on input pixel ``start``.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    receptive_field: int | None
    jump: int
    start: float


def layer_rows(model: nn.Module) -> list[LayerRow]:
    """Every leaf layer in order, its receptive field computed from kernel sizes, strides and
    pooling (``r += (k - 1) · jump``, ``jump *= stride``)."""
    with locked_eval(model):
        summary = layer_summary(model)
    rows, field, jump, start, whole = [], 1, 1, 0.0, False
    for row in summary:
        module = model.get_submodule(str(row["layer"]))
        if isinstance(module, nn.Conv2d | nn.MaxPool2d):
            kernel, stride = _pair(module.kernel_size), _pair(module.stride)
            start += ((kernel - 1) / 2 - _pair(module.padding)) * jump
            field += (kernel - 1) * jump
            jump *= stride
        whole = whole or isinstance(module, nn.Flatten | nn.Linear)
        name, kind, params = str(row["layer"]), str(row["type"]), int(row["params"])  # type: ignore[call-overload]
        shape = tuple(int(s) for s in row["output_shape"])  # type: ignore[union-attr]
        rows.append(LayerRow(name, kind, shape, params, None if whole else field, jump, start))
    return rows


def activation_rows(model: nn.Module) -> list[LayerRow]:
    """The LeakyReLU row of each conv block: the maps units live in, input to output."""
    blocks = [name.rpartition(".")[0] for name in conv_layers(model)]
    by_name = {row.name: row for row in layer_rows(model)}
    return [by_name[f"{block}.act"] for block in blocks]


def receptive_box(row: LayerRow, cell: tuple[int, int], side: int = 28) -> tuple[int, ...]:
    """``(top, left, bottom, right)``, inclusive and clipped to the image: the input pixels that
    cell ``(row, col)`` of the map ``row`` depends on."""
    half = ((row.receptive_field or side) - 1) / 2
    centres = [row.start + index * row.jump for index in cell]
    low = [int(np.clip(math.ceil(c - half), 0, side - 1)) for c in centres]
    high = [int(np.clip(math.floor(c + half), 0, side - 1)) for c in centres]
    return low[0], low[1], high[0], high[1]


# --------------------------------------------------------------------------- one unit


@dataclass(frozen=True)
class UnitWeights:
    """One unit's parameters: its kernel per input channel (largest L2 norm first in ``order``)
    and its BatchNorm. The conv has no bias (``bias=False``): BatchNorm's ``beta`` is the shift."""

    kernel: np.ndarray
    norms: np.ndarray
    order: np.ndarray
    gamma: float
    beta: float
    mean: float
    var: float
    eps: float

    @property
    def scale(self) -> float:
        """What BatchNorm multiplies the conv sum by: ``gamma / sqrt(var + eps)``."""
        return self.gamma / math.sqrt(self.var + self.eps)


def unit_weights(model: nn.Module, layer: int, channel: int) -> UnitWeights:
    """Kernel ``[in, k, k]``, per-slice L2 norms and BatchNorm of unit ``channel`` of ``layer``."""
    block = conv_block(model, layer)
    if not 0 <= channel < block.conv.out_channels:
        raise ValueError(
            f"Channel {channel} does not exist: layer {layer} has {block.conv.out_channels}."
        )
    kernel = block.conv.weight.detach()[channel].double().numpy().copy()
    norms = np.sqrt((kernel**2).sum(axis=(1, 2)))
    bn = block.bn
    stats = (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    gamma, beta, mean, var = (float(values.detach()[channel]) for values in stats)
    return UnitWeights(
        kernel, norms, np.argsort(-norms, kind="stable"), gamma, beta, mean, var, float(bn.eps)
    )


@dataclass(frozen=True)
class Cell:
    """How one activation came about: the input ``patch`` ``[in, k, k]`` read from block-input
    ``rows`` × ``cols`` (border indices repeat: replicate padding), the conv sum, BatchNorm, and
    the LeakyReLU."""

    row: int
    col: int
    rows: np.ndarray
    cols: np.ndarray
    patch: np.ndarray
    conv: float
    normalised: float
    activation: float


@dataclass(frozen=True)
class CellArithmetic:
    """A cell of a unit's map worked out by hand, and the max-pool window that holds it
    (``pool`` is None when flooring drops the cell: an odd map's last row or column)."""

    layer: int
    channel: int
    cell: Cell
    weights: UnitWeights
    slope: float
    pool: tuple[Cell, ...] | None

    @property
    def contributions(self) -> np.ndarray:
        """``Σ patch · kernel`` per input channel (they add up to the conv sum)."""
        return (self.cell.patch * self.weights.kernel).sum(axis=(1, 2))

    @property
    def pooled(self) -> float | None:
        """The max-pool output: the largest activation of the window."""
        return None if self.pool is None else max(c.activation for c in self.pool)


def _cell(inputs: np.ndarray, w: UnitWeights, slope: float, row: int, col: int) -> Cell:
    half = w.kernel.shape[-1] // 2
    rows = np.clip(np.arange(row - half, row + half + 1), 0, inputs.shape[1] - 1)
    cols = np.clip(np.arange(col - half, col + half + 1), 0, inputs.shape[2] - 1)
    patch = inputs[:, rows[:, None], cols[None, :]]
    conv = float((patch * w.kernel).sum())
    normalised = (conv - w.mean) / math.sqrt(w.var + w.eps) * w.gamma + w.beta
    activation = normalised if normalised > 0 else slope * normalised
    return Cell(row, col, rows, cols, patch, conv, normalised, activation)


def cell_arithmetic(
    model: nn.Module, x: torch.Tensor, layer: int, channel: int, cell: tuple[int, int]
) -> CellArithmetic:
    """Recompute activation ``cell`` = (row, col) of unit ``channel`` of ``layer`` from the block's
    input: patch × kernel summed over input channels, BatchNorm, LeakyReLU, then its pool window."""
    block = conv_block(model, layer)
    conv, pool = block.conv, block.pool
    if conv.padding_mode != "replicate" or _pair(conv.stride) != 1:
        raise ValueError("The arithmetic follows stride-1 convs with replicate padding.")
    weights = unit_weights(model, layer, channel)
    with locked_eval(model), torch.no_grad():
        inputs = model.features[:layer](x)[0].double().numpy()
    height, width = inputs.shape[1:]
    row, col = cell
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"Cell ({row}, {col}) is outside the {height}×{width} map.")
    slope = float(block.act.negative_slope)
    size = _pair(pool.kernel_size)
    top, left = row // size * size, col // size * size
    window = None
    if top + size <= height and left + size <= width:
        window = tuple(
            _cell(inputs, weights, slope, r, c)
            for r in range(top, top + size)
            for c in range(left, left + size)
        )
    target = _cell(inputs, weights, slope, row, col)
    return CellArithmetic(layer, channel, target, weights, slope, window)


@dataclass(frozen=True)
class HeadArithmetic:
    """The dense head worked out: ``hidden = LeakyReLU(W1 · features + b1)``, then each logit as
    ``Σ_j W2[c, j] · hidden[j] + b2[c]`` (``terms`` ``[10, H]``), raw and calibrated softmax."""

    features: np.ndarray
    hidden_pre: np.ndarray
    hidden: np.ndarray
    terms: np.ndarray
    bias: np.ndarray
    temperature: float

    @property
    def logits(self) -> np.ndarray:
        """``[10]`` logits: the terms summed plus the bias."""
        return self.terms.sum(axis=1) + self.bias

    @property
    def raw(self) -> np.ndarray:
        """``softmax(logits)``: what the network itself outputs."""
        return softmax(self.logits)

    @property
    def calibrated(self) -> np.ndarray:
        """``softmax(logits / T)``: the probabilities every page shows."""
        return softmax(self.logits, self.temperature)


def head_arithmetic(model: nn.Module, x: torch.Tensor, temperature: float = 1.0) -> HeadArithmetic:
    """The dense head of a CNN on one input, by hand from its last pooled feature maps."""
    conv_block(model, 0)  # a CNN: conv blocks, then the dense head
    head = model.head
    with locked_eval(model), torch.no_grad():
        features = model.features(x).flatten().double().numpy()
    w1, b1 = (p.detach().double().numpy() for p in (head.fc1.weight, head.fc1.bias))
    w2, b2 = (p.detach().double().numpy() for p in (head.fc2.weight, head.fc2.bias))
    pre = w1 @ features + b1
    hidden = np.where(pre > 0, pre, float(head.act.negative_slope) * pre)
    return HeadArithmetic(features, pre, hidden, w2 * hidden, b2.copy(), float(temperature))


# --------------------------------------------------------------------------- ablation


def ablation_logits(model: nn.Module, x: torch.Tensor, layer: int, off: np.ndarray) -> np.ndarray:
    """Logits ``[N, 10]`` with the channels marked in ``off`` (bool ``[N, C]``) zeroed after
    ``layer``'s activation. One forward pass: the hook widens the batch to N copies, so the layers
    before run once; it is removed in ``finally``."""
    block = conv_block(model, layer)
    off = np.asarray(off, dtype=bool)
    if off.ndim != 2 or off.shape[1] != block.conv.out_channels:
        raise ValueError(f"Expected an [N, {block.conv.out_channels}] mask, got {off.shape}.")
    keep = torch.from_numpy(~off).float()[:, :, None, None]

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * keep

    with locked_eval(model):
        handle = block.act.register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = model(x)
        finally:
            handle.remove()
    return logits.double().numpy()


def ablate(model: nn.Module, x: torch.Tensor, layer: int, channels: list[int]) -> np.ndarray:
    """Logits ``[10]`` with ``channels`` of ``layer`` switched off together."""
    off = np.zeros((1, conv_block(model, layer).conv.out_channels), dtype=bool)
    off[0, list(channels)] = True
    return ablation_logits(model, x, layer, off)[0]


@dataclass(frozen=True)
class ChannelRanking:
    """Channels of a layer by how much switching each off alone lowers the ``target`` logit."""

    target: int
    logits: np.ndarray
    channels: np.ndarray
    drops: np.ndarray
    predicted: np.ndarray


def channel_ranking(
    model: nn.Module, x: torch.Tensor, layer: int, target: int | None = None
) -> ChannelRanking:
    """Every channel of ``layer`` switched off alone (one pass with C + 1 copies, the first intact);
    ``target`` defaults to the predicted class."""
    channels = conv_block(model, layer).conv.out_channels
    off = np.vstack([np.zeros((1, channels), bool), np.eye(channels, dtype=bool)])
    logits = ablation_logits(model, x, layer, off)
    target = int(np.argmax(logits[0])) if target is None else int(target)
    drops = logits[0, target] - logits[1:, target]
    order = np.argsort(-drops, kind="stable")
    return ChannelRanking(target, logits[0], order, drops[order], logits[1:].argmax(1)[order])
