"""Cached loaders: the models of the checkpoint directory, their evaluation files, MNIST's test set.

Models (one :class:`core.predict.Predictor` per checkpoint directory) and the MNIST test set are
``st.cache_resource`` (shared by all sessions, read-only); evaluation files are ``st.cache_data``
with ``max_entries``. Every cache key carries the directory's signature (name, size, mtime of its
files), so replacing a checkpoint invalidates what was loaded from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, read_json_object
from core.data import load_mnist_test, resolve_data_dir
from core.evalfile import EvalFile, EvalFileError, read_eval_file
from core.models import VARIANTS
from core.predict import Predictor

# One image at a time: a second intra-op thread only adds contention between concurrent sessions
# (measured under load: Grad-CAM p50 157 ms with 2 threads vs 2 ms with 1 on cnn3).
torch.set_num_threads(1)

CHECKPOINTS_ENV_VAR = "DIGIT_LENS_CHECKPOINTS"
_SIGNED_SUFFIXES = {".safetensors", ".json", ".npz"}


def checkpoint_dir() -> str:
    """Checkpoint directory: ``$DIGIT_LENS_CHECKPOINTS`` or the shipped ``checkpoints/``."""
    return os.environ.get(CHECKPOINTS_ENV_VAR) or str(DEFAULT_DIRECTORY)


def directory_signature(directory: str) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of the checkpoint files, so replaced files invalidate the caches.

    A dangling symlink or a link loop has no size: it is listed with (-1, -1) and the loader
    reports it as a damaged file, instead of the signature itself raising on every page.
    """
    path = Path(directory)
    try:
        entries = sorted(p for p in path.iterdir() if p.suffix in _SIGNED_SUFFIXES)
    except OSError:
        return ()
    signature = []
    for entry in entries:
        try:
            info = entry.stat()
        except OSError:
            signature.append((entry.name, -1, -1))
        else:
            signature.append((entry.name, info.st_size, info.st_mtime_ns))
    return tuple(signature)


def failure_title(error: CheckpointError) -> str:
    """The bold first words of the message for a checkpoint failure."""
    if isinstance(error, EvalFileError):
        return "The precomputed evaluation could not be read."
    return "The models could not be loaded."


@dataclass(frozen=True)
class ModelStore:
    """The loaded models of one checkpoint directory, and why the others could not be loaded."""

    predictor: Predictor | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        """Loaded variants, in :data:`core.models.VARIANTS` order."""
        return [] if self.predictor is None else [v for v in VARIANTS if v in self.predictor.models]


@st.cache_resource(max_entries=4, show_spinner="Loading the models…")
def load_store(directory: str, signature: tuple) -> ModelStore:
    try:
        return ModelStore(Predictor(VARIANTS, directory))
    except CheckpointError:
        pass
    good, errors = [], {}
    for variant in VARIANTS:
        try:
            Predictor((variant,), directory)
            good.append(variant)
        except CheckpointError as error:
            errors[variant] = str(error)
    return ModelStore(Predictor(tuple(good), directory) if good else None, errors)


def model_store() -> ModelStore:
    """Every variant that loads, plus a readable error for each one that does not (cached)."""
    directory = checkpoint_dir()
    return load_store(directory, directory_signature(directory))


def predictor() -> Predictor:
    """The cached predictor of every model that loads; ``CheckpointError`` if none does."""
    store = model_store()
    if store.predictor is None:
        raise CheckpointError(f"No model could be loaded from {checkpoint_dir()}.")
    return store.predictor


def loaded_variants() -> list[str]:
    """Variants that loaded (raises ``CheckpointError`` when none did)."""
    predictor()
    return model_store().variants


def cached_model(variant: str, directory: str, signature: tuple) -> tuple[torch.nn.Module, dict]:
    """Model and metadata from the cache, for other cached functions (no UI calls)."""
    pred = load_store(directory, signature).predictor
    if pred is None or variant not in pred.models:
        raise CheckpointError(f"Model {variant!r} is not loaded.")
    return pred.models[variant], pred.metadata[variant]


def model_and_metadata(variant: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A loaded model and its checkpoint metadata."""
    pred = predictor()
    if variant not in pred.models:
        raise CheckpointError(f"Model {variant!r} is not loaded.")
    return pred.models[variant], pred.metadata[variant]


@st.cache_data(max_entries=8, show_spinner=False)
def cached_eval_file(variant: str, directory: str, signature: tuple) -> EvalFile:
    return read_eval_file(variant, directory)


def eval_file(variant: str) -> EvalFile:
    """The precomputed, validated test-set evaluation of a variant (``EvalFileError`` if bad)."""
    directory = checkpoint_dir()
    return cached_eval_file(variant, directory, directory_signature(directory))


@st.cache_data(max_entries=4, show_spinner=False)
def _artifact(name: str, directory: str, signature: tuple) -> dict | None:
    path = Path(directory) / name
    if not path.exists():
        return None
    return read_json_object(path, f"Precomputed {name}", error=EvalFileError)


def faithfulness_table() -> dict | None:
    """``checkpoints/faithfulness.json`` (``scripts/faithfulness.py``), None if not computed."""
    directory = checkpoint_dir()
    return _artifact("faithfulness.json", directory, directory_signature(directory))


def robustness_table() -> dict | None:
    """``checkpoints/robustness.json`` (``scripts/robustness.py``), None if not computed."""
    directory = checkpoint_dir()
    return _artifact("robustness.json", directory, directory_signature(directory))


@st.cache_resource(max_entries=2, show_spinner="Loading the MNIST test images…")
def _mnist_test(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_mnist_test(data_dir)
    return images.numpy(), labels.numpy()


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images (uint8 ``[10000, 28, 28]``) and labels; raises ``DataUnavailableError``."""
    return _mnist_test(str(resolve_data_dir()))
