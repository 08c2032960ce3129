"""Test-set statistics of every conv unit: the digits that excite it most, and its selectivity.

Precomputed by ``scripts/units.py`` into ``checkpoints/units_<variant>.npz``: per unit the
``TOP`` test digits with the highest peak (test indices, peak values and peak cells only, never
images) and the mean activation per digit class. :func:`read_unit_stats` reads a file back bounded,
without pickle, and validated against the model's shapes.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.checkpoints import atomic_write_bytes, read_bounded
from core.inputs import to_input
from core.locks import locked_eval
from core.models import conv_layers
from core.units import (
    NUM_CLASSES,
    RUN_HINT,
    TOP,
    UnitsFileError,
    conv_block,
)

MAX_UNITS_BYTES = 2**20


@dataclass(frozen=True)
class LayerStats:
    """Per unit of a layer: the ``TOP`` test digits with the highest peak (``top_index`` test
    indices, ``top_value``, ``top_cell`` (row, col) in the map) and ``class_mean`` ``[C, 10]``,
    the mean activation over the map on digits of each class (NaN for a class not scanned)."""

    top_index: np.ndarray
    top_value: np.ndarray
    top_cell: np.ndarray
    class_mean: np.ndarray


@dataclass(frozen=True)
class UnitStats:
    """Test-set statistics of every unit of a model, computed from weights with ``sha256``."""

    layers: tuple[LayerStats, ...]
    images: int
    sha256: str

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The npz arrays (float16 values, uint16 indices, uint8 cells: a few KB)."""
        arrays = {"images": np.array(self.images), "sha256": np.array(self.sha256)}
        index_type = np.uint16 if self.images <= 2**16 else np.int32
        for i, s in enumerate(self.layers, start=1):
            arrays[f"layer{i}_top_index"] = s.top_index.astype(index_type)
            arrays[f"layer{i}_top_value"] = s.top_value.astype(np.float16)
            arrays[f"layer{i}_top_cell"] = s.top_cell.astype(np.uint8)
            arrays[f"layer{i}_class_mean"] = s.class_mean.astype(np.float16)
        return arrays

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], shapes: list[tuple[int, ...]]
    ) -> UnitStats:
        """Validated statistics for maps of ``shapes`` ``(C, H, W)``; ``UnitsFileError`` if not."""

        def get(key: str, shape: tuple[int, ...], kinds: str) -> np.ndarray:
            value = arrays.get(key)
            if value is None or value.shape != shape or value.dtype.kind not in kinds:
                found = "missing" if value is None else f"{value.dtype} {list(value.shape)}"
                raise UnitsFileError(f"{key} is {found}, expected {list(shape)}")
            return value

        images = int(get("images", (), "iu"))
        sha256 = str(get("sha256", (), "U"))
        if not TOP <= images <= 10**6 or f"layer{len(shapes) + 1}_top_index" in arrays:
            raise UnitsFileError("it was computed for another model or data set")
        layers = []
        for i, (channels, height, width) in enumerate(shapes, start=1):
            index = get(f"layer{i}_top_index", (channels, TOP), "iu").astype(np.int64)
            value = get(f"layer{i}_top_value", (channels, TOP), "f").astype(np.float32)
            cell = get(f"layer{i}_top_cell", (channels, TOP, 2), "iu").astype(np.int64)
            mean = get(f"layer{i}_class_mean", (channels, NUM_CLASSES), "f").astype(np.float32)
            inside = (cell[..., 0] < height).all() and (cell[..., 1] < width).all()
            if index.max() >= images or not inside:
                raise UnitsFileError(f"layer {i} points outside the test set or its maps")
            if not np.isfinite(value).all() or np.isinf(mean).any():
                raise UnitsFileError(f"layer {i} holds non-finite values")
            layers.append(LayerStats(index, value, cell, mean))
        return cls(tuple(layers), images, sha256)


def precompute(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: Mapping[str, float],
    sha256: str = "",
    batch_size: int = 250,
) -> UnitStats:
    """Top-9 digits and per-class mean activation of every unit over uint8 ``images`` ``[N, 28, 28]``
    (deterministic: fixed batches, ties broken by the lower test index)."""
    if len(images) < TOP:
        raise ValueError(f"Need at least {TOP} images, got {len(images)}.")
    blocks = [conv_block(model, i) for i in range(len(conv_layers(model)))]
    peaks, cells, sums = [[] for _ in blocks], [[] for _ in blocks], [0.0 for _ in blocks]
    onehot = np.eye(NUM_CLASSES)[np.asarray(labels, dtype=np.int64)]
    captured: list[torch.Tensor] = []

    def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured.append(output)

    with locked_eval(model), torch.no_grad():
        handles = [block.act.register_forward_hook(record) for block in blocks]
        try:
            for start in range(0, len(images), batch_size):
                captured.clear()
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
                model(to_input(batch, normalization))
                for i, out in enumerate(captured):
                    flat = out.flatten(2)
                    peak, where = flat.max(dim=2)
                    peaks[i].append(peak.numpy())
                    cells[i].append(np.stack(np.divmod(where.numpy(), out.shape[3]), axis=-1))
                    means = flat.mean(2).double().numpy()
                    sums[i] = sums[i] + onehot[start : start + batch_size].T @ means
        finally:
            for handle in handles:
                handle.remove()
    counts = onehot.sum(axis=0)[:, None]
    layers = []
    for i in range(len(blocks)):
        peak, cell = np.concatenate(peaks[i]), np.concatenate(cells[i])
        top = np.argsort(-peak, axis=0, kind="stable")[:TOP].T
        channel = np.arange(peak.shape[1])[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums[i] / counts, np.nan).T
        layers.append(LayerStats(top, peak[top, channel], cell[top, channel], mean))
    return UnitStats(tuple(layers), len(images), sha256)


def units_path(variant: str, directory: str | os.PathLike[str]) -> Path:
    """Where a variant's unit statistics live: ``<directory>/units_<variant>.npz``."""
    return Path(directory) / f"units_{variant}.npz"


def write_unit_stats(path: Path, stats: UnitStats) -> None:
    """Write the npz atomically, byte for byte reproducible (fixed zip timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in stats.to_arrays().items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as handle:
                np.lib.format.write_array(handle, value, allow_pickle=False)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_unit_stats(
    variant: str, directory: str | os.PathLike[str], shapes: list[tuple[int, ...]]
) -> UnitStats:
    """A variant's unit statistics, read bounded and without pickle, validated against ``shapes``
    (from :func:`activation_rows`); ``UnitsFileError`` with a sentence otherwise."""
    path = units_path(variant, directory)
    what = f"Unit statistics of {variant!r}"
    hint = f"{RUN_HINT[0].upper()}{RUN_HINT[1:]}."
    blob = read_bounded(path, MAX_UNITS_BYTES, what, UnitsFileError, hint=hint)
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return UnitStats.from_arrays(arrays, shapes)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UnitsFileError(f"{what}: {path} is unreadable ({error}); {RUN_HINT}.") from error
    except UnitsFileError as error:
        raise UnitsFileError(
            f"{what}: {path} does not fit the model ({error}); {RUN_HINT}."
        ) from error
