"""Precomputed evaluation of one checkpoint (``checkpoints/<variant>.eval.npz``), as one schema.

:class:`EvalFile` is the only place that knows the file's key scheme: ``core.precompute`` builds
one and writes :meth:`EvalFile.to_arrays`; readers get one back from :func:`read_eval_file`,
validated (shapes, lengths, label range, finiteness), so a damaged or hand-edited file is a
:class:`CheckpointError` with a sentence, never a crash deep inside a page.

Keys: ``logits`` (float32 [N, 10]), ``probabilities`` (float32 [N, 10]), ``labels`` (int64 [N]);
``temperature`` (scalar); ``reliability_edges`` and ``reliability_{count,confidence,accuracy}``
before and ``reliability_calibrated_{count,confidence,accuracy}`` after temperature scaling;
``risk_coverage_{threshold,coverage,accuracy,risk}``; ``ood_sets`` (names) and per set
``ood_<set>_logits`` (float16 [n, 10]) and ``ood_<set>_examples`` (uint8 [k, 28, 28]);
``canvas_logits`` (float16 [m, 10]) and ``canvas_labels`` (int64 [m]): test digits re-drawn the
way people draw on the canvas (``core.canvas_style``).
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, atomic_write_bytes, read_bounded
from core.evaluate import softmax
from core.inputs import IMAGE_SIDE

NUM_CLASSES = 10
MAX_EVAL_BYTES = 64 * 2**20
RELIABILITY_KEYS = ("count", "confidence", "accuracy")
CURVE_KEYS = ("threshold", "coverage", "accuracy", "risk")
_SET_NAME = re.compile(r"^[a-z0-9_]{1,40}$")


class EvalFileError(CheckpointError):
    """An evaluation file is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Reliability:
    """Equal-width confidence bins: ``edges`` [B + 1]; per bin ``count``, mean ``confidence`` and
    ``accuracy`` [B] (NaN where a bin is empty)."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """The bins as the plain dict the figures take."""
        return {"edges": self.edges, **{key: getattr(self, key) for key in RELIABILITY_KEYS}}


@dataclass(frozen=True)
class OODSet:
    """One out-of-distribution set: every image's logits and a few example images."""

    logits: np.ndarray
    examples: np.ndarray


@dataclass(frozen=True)
class EvalFile:
    """Everything precomputed about one checkpoint on the MNIST test set and the OOD sets."""

    logits: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    temperature: float = 1.0
    reliability_before: Reliability | None = None
    reliability_after: Reliability | None = None
    risk_coverage: dict[str, np.ndarray] | None = None
    ood: dict[str, OODSet] = field(default_factory=dict)
    canvas_logits: np.ndarray | None = None
    canvas_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def predictions(self) -> np.ndarray:
        """Predicted digit per test image."""
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """Maximum raw probability per test image."""
        return self.probabilities.max(axis=1)

    @property
    def calibrated_probabilities(self) -> np.ndarray:
        """Softmax of ``logits / temperature``: the probabilities users are shown."""
        return softmax(self.logits, self.temperature)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The named arrays written to the npz file."""
        arrays: dict[str, np.ndarray] = {
            "logits": self.logits.astype(np.float32),
            "probabilities": self.probabilities.astype(np.float32),
            "labels": self.labels.astype(np.int64),
            "ood_sets": np.array(list(self.ood), dtype=np.str_),
            "temperature": np.float64(self.temperature),
        }
        if self.reliability_before is not None and self.reliability_after is not None:
            arrays["reliability_edges"] = self.reliability_before.edges
            for key in RELIABILITY_KEYS:
                arrays[f"reliability_{key}"] = getattr(self.reliability_before, key)
            for key in RELIABILITY_KEYS:
                arrays[f"reliability_calibrated_{key}"] = getattr(self.reliability_after, key)
        if self.risk_coverage is not None:
            arrays.update({f"risk_coverage_{k}": self.risk_coverage[k] for k in CURVE_KEYS})
        for name, entry in self.ood.items():
            arrays[f"ood_{name}_logits"] = entry.logits.astype(np.float16)
            arrays[f"ood_{name}_examples"] = entry.examples.astype(np.uint8)
        if self.canvas_logits is not None and self.canvas_labels is not None:
            arrays["canvas_logits"] = self.canvas_logits.astype(np.float16)
            arrays["canvas_labels"] = self.canvas_labels.astype(np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> EvalFile:
        """Rebuild from the npz arrays; :class:`EvalFileError` for any missing or bad field."""
        for key in ("logits", "probabilities", "labels"):
            if key not in arrays:
                raise EvalFileError(f"lacks the array {key!r}")
        reliability_before = reliability_after = None
        if "reliability_edges" in arrays:
            edges = _float(arrays, "reliability_edges")
            reliability_before = Reliability(
                edges, *(_float(arrays, f"reliability_{k}") for k in RELIABILITY_KEYS)
            )
            reliability_after = Reliability(
                edges, *(_float(arrays, f"reliability_calibrated_{k}") for k in RELIABILITY_KEYS)
            )
        curve = None
        if any(f"risk_coverage_{k}" in arrays for k in CURVE_KEYS):
            curve = {k: _float(arrays, f"risk_coverage_{k}") for k in CURVE_KEYS}
        names = _array(arrays, "ood_sets") if "ood_sets" in arrays else np.array([], np.str_)
        if names.ndim != 1 or names.dtype.kind != "U":
            raise EvalFileError("'ood_sets' is not a list of names")
        ood = {}
        for name in (str(n) for n in names):
            if not _SET_NAME.match(name):
                raise EvalFileError(f"OOD set name {name[:40]!r} is not a plain name")
            ood[name] = OODSet(
                _float(arrays, f"ood_{name}_logits"), _array(arrays, f"ood_{name}_examples")
            )
        temperature = _float(arrays, "temperature") if "temperature" in arrays else np.float64(1)
        if temperature.shape != ():
            raise EvalFileError("'temperature' is not a single number")
        labels = _array(arrays, "labels")
        if labels.dtype.kind not in "iu":
            raise EvalFileError("'labels' are not integers")
        canvas_logits = canvas_labels = None
        if "canvas_logits" in arrays or "canvas_labels" in arrays:
            canvas_logits = _float(arrays, "canvas_logits")
            canvas_labels = _array(arrays, "canvas_labels")
            if canvas_labels.dtype.kind not in "iu":
                raise EvalFileError("'canvas_labels' are not integers")
        return cls(
            logits=_float(arrays, "logits"),
            probabilities=_float(arrays, "probabilities"),
            labels=labels.astype(np.int64),
            temperature=float(temperature),
            reliability_before=reliability_before,
            reliability_after=reliability_after,
            risk_coverage=curve,
            ood=ood,
            canvas_logits=canvas_logits,
            canvas_labels=canvas_labels,
        )


def _array(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise EvalFileError(f"lacks the array {key!r}")
    return np.asarray(arrays[key])


def _float(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    value = _array(arrays, key)
    if value.dtype.kind not in "fiu":
        raise EvalFileError(f"{key!r} does not hold numbers")
    return value


def _validate(file: EvalFile) -> None:
    """Shapes, lengths, ranges and finiteness of every field (``EvalFileError`` otherwise)."""
    n = len(file.labels)
    if file.labels.ndim != 1 or n == 0:
        raise EvalFileError("'labels' must be a non-empty list of digits")
    for key in ("logits", "probabilities"):
        value = getattr(file, key)
        if value.shape != (n, NUM_CLASSES):
            raise EvalFileError(f"{key!r} has shape {value.shape}, expected ({n}, {NUM_CLASSES})")
        if not np.isfinite(value).all():
            raise EvalFileError(f"{key!r} holds NaN or infinite values")
    if file.labels.min() < 0 or file.labels.max() >= NUM_CLASSES:
        raise EvalFileError("'labels' must be digits 0-9")
    if file.probabilities.min() < 0 or file.probabilities.max() > 1 + 1e-4:
        raise EvalFileError("'probabilities' must lie in [0, 1]")
    if not (math.isfinite(file.temperature) and file.temperature > 0):
        raise EvalFileError("'temperature' must be a positive number")
    for reliability in (file.reliability_before, file.reliability_after):
        if reliability is None:
            continue
        bins = len(reliability.count)
        if reliability.edges.shape != (bins + 1,) or not np.isfinite(reliability.edges).all():
            raise EvalFileError("the reliability bins do not fit their edges")
        if any(getattr(reliability, k).shape != (bins,) for k in RELIABILITY_KEYS):
            raise EvalFileError("the reliability bins have different lengths")
    if file.risk_coverage is not None:
        lengths = {file.risk_coverage[k].shape for k in CURVE_KEYS}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise EvalFileError("the risk-coverage arrays have different lengths")
        if not all(np.isfinite(file.risk_coverage[k]).all() for k in CURVE_KEYS):
            raise EvalFileError("the risk-coverage curve holds NaN or infinite values")
    if file.canvas_logits is not None and file.canvas_labels is not None:
        m = len(file.canvas_labels)
        if file.canvas_logits.shape != (m, NUM_CLASSES) or file.canvas_labels.shape != (m,):
            raise EvalFileError("the canvas-style digits' logits and labels do not match")
        if not np.isfinite(file.canvas_logits).all():
            raise EvalFileError("the canvas-style digits' logits hold NaN or infinite values")
        if m and (file.canvas_labels.min() < 0 or file.canvas_labels.max() >= NUM_CLASSES):
            raise EvalFileError("'canvas_labels' must be digits 0-9")
    for name, entry in file.ood.items():
        if entry.logits.ndim != 2 or entry.logits.shape[1:] != (NUM_CLASSES,):
            raise EvalFileError(f"the logits of OOD set {name!r} are not [n, {NUM_CLASSES}]")
        if len(entry.logits) == 0 or not np.isfinite(entry.logits).all():
            raise EvalFileError(f"the logits of OOD set {name!r} are empty, NaN or infinite")
        if entry.examples.ndim != 3 or entry.examples.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise EvalFileError(f"the examples of OOD set {name!r} are not 28×28 images")
        if entry.examples.dtype != np.uint8:
            raise EvalFileError(f"the examples of OOD set {name!r} are not 8-bit images")


def eval_path(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Path:
    """Path of a variant's evaluation file."""
    return Path(directory) / f"{variant}.eval.npz"


def write_eval_file(path: Path, evaluation: EvalFile) -> None:
    """Save an evaluation as a compressed npz through a temp file + rename."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **evaluation.to_arrays())
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_eval_file(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> EvalFile:
    """A variant's evaluation, validated; :class:`EvalFileError` if missing, unreadable or bad.

    Only a regular file of at most :data:`MAX_EVAL_BYTES` is read, and ``allow_pickle=False``:
    object arrays (the only pickled content npz can hold) are refused.
    """
    path = eval_path(variant, directory)
    blob = read_bounded(path, MAX_EVAL_BYTES, f"Evaluation file of {variant!r}", EvalFileError)
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise EvalFileError(f"Evaluation file {path} is unreadable ({error}).") from error
    try:
        return EvalFile.from_arrays(arrays)
    except EvalFileError as error:
        raise EvalFileError(
            f"Evaluation file {path} is damaged: {error}; "
            "run `python scripts/evaluate_all.py` to rebuild it."
        ) from error
