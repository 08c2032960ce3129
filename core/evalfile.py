"""Precomputed evaluation arrays (``checkpoints/<variant>.eval.npz``): written atomically, read safely."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, atomic_write_bytes


def eval_path(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Path:
    """Path of a variant's evaluation file."""
    return Path(directory) / f"{variant}.eval.npz"


def write_eval_file(path: Path, **arrays: np.ndarray) -> None:
    """Save named arrays as a compressed npz through a temp file + rename."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_eval_file(
    variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY
) -> dict[str, np.ndarray]:
    """All arrays of a variant's evaluation file; ``CheckpointError`` if missing or unreadable.

    ``allow_pickle=False``: object arrays (the only pickled content npz can hold) are refused.
    """
    path = eval_path(variant, directory)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError as error:
        raise CheckpointError(
            f"Evaluation file {path} is missing; run `python scripts/evaluate_all.py`."
        ) from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"Evaluation file {path} is unreadable ({error}).") from error
