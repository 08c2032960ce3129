"""Safe checkpoints: weights in safetensors, metadata in JSON beside them, written atomically.

``load_model`` never unpickles anything. It checks the file is present and not a Git LFS pointer,
that its sha256 matches the metadata, that the tensors parse and match the variant's architecture
(key set and shapes) and are finite, and raises :class:`CheckpointError` with a readable message
for every failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from core.models import VARIANTS, build_model

DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "checkpoints"
REQUIRED_METADATA = (
    "variant",
    "params",
    "normalization",
    "test_accuracy",
    "per_class",
    "history",
    "training",
    "sha256",
)
LFS_POINTER_PREFIX = b"version https://git-lfs"
# The shipped files are 0.01-3.2 MB; anything far larger is not ours and is not read whole.
MAX_WEIGHTS_BYTES = 256 * 2**20
MAX_METADATA_BYTES = 4 * 2**20
RESTORE_HINT = "Restore it from git or retrain with `python scripts/train_all.py`."


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, tampered with or does not fit its architecture."""


def read_bounded(
    path: Path,
    limit: int,
    what: str,
    error: type[CheckpointError] = CheckpointError,
    hint: str = RESTORE_HINT,
) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else ``error``.

    Symlinks are followed, but a device (``/dev/zero``), a FIFO (which would block the reader), a
    directory, a dangling link or a link loop is refused with a sentence, never read.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise error(f"{what}: {path} is missing. {hint}") from exc
    except OSError as exc:
        raise error(f"{what}: cannot read {path} ({exc.strerror or exc}).") from exc
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what}: {path} is not a regular file. {hint}")
    if info.st_size > limit:
        raise error(f"{what}: {path} is {info.st_size:,} bytes, more than the {limit:,} allowed.")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{what}: cannot read {path} ({exc.strerror or exc}).") from exc
    if len(data) > limit:
        raise error(f"{what}: {path} grew past the {limit:,} bytes allowed while being read.")
    if data.startswith(LFS_POINTER_PREFIX):
        raise error(f"{what}: {path} is a Git LFS pointer, not the file. Run `git lfs pull`.")
    return data


def weights_path(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Path:
    """Path of a variant's safetensors file."""
    return Path(directory) / f"{variant}.safetensors"


def metadata_path(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Path:
    """Path of a variant's JSON metadata."""
    return Path(directory) / f"{variant}.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are shared, readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(
    model: nn.Module,
    variant: str,
    metadata: dict[str, Any],
    directory: str | os.PathLike[str] = DEFAULT_DIRECTORY,
) -> dict[str, Any]:
    """Write ``<variant>.safetensors`` and ``<variant>.json``; returns the metadata as written."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors_bytes(state, metadata={"variant": variant})
    full = {**metadata, "variant": variant, "sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write_bytes(weights_path(variant, directory), blob)
    write_metadata(variant, full, directory)
    return full


def write_metadata(
    variant: str, metadata: dict[str, Any], directory: str | os.PathLike[str] = DEFAULT_DIRECTORY
) -> None:
    """Rewrite a checkpoint's JSON metadata (e.g. after re-evaluation); the weights are untouched."""
    atomic_write_text(metadata_path(variant, directory), json.dumps(metadata, indent=2) + "\n")


def read_metadata(
    variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY
) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, validated for the fields other code relies on."""
    path = metadata_path(variant, directory)
    raw = read_bounded(path, MAX_METADATA_BYTES, f"Model {variant!r} metadata")
    try:
        metadata = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"Model {variant!r}: metadata {path} is not valid JSON ({error})."
        ) from error
    if not isinstance(metadata, dict):
        raise CheckpointError(f"Model {variant!r}: metadata {path} is not a JSON object.")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(f"Model {variant!r}: metadata {path} lacks {', '.join(missing)}.")
    if metadata["variant"] != variant:
        raise CheckpointError(
            f"Model {variant!r}: metadata {path} describes {metadata['variant']!r} instead."
        )
    norm = metadata["normalization"]
    if not (
        isinstance(norm, dict)
        and isinstance(norm.get("mean"), int | float)
        and isinstance(norm.get("std"), int | float)
        and norm["std"] > 0
    ):
        raise CheckpointError(f"Model {variant!r}: metadata {path} has an invalid normalization.")
    return metadata


def _read_weights(
    variant: str, directory: str | os.PathLike[str], expected_sha: str
) -> dict[str, torch.Tensor]:
    path = weights_path(variant, directory)
    blob = read_bounded(path, MAX_WEIGHTS_BYTES, f"Model {variant!r} weights")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected_sha:
        raise CheckpointError(
            f"Model {variant!r}: {path} does not match its recorded sha256 "
            f"(file {digest[:12]}…, expected {str(expected_sha)[:12]}…): it is truncated, "
            "corrupted or was changed."
        )
    try:
        return load_safetensors_bytes(blob)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"Model {variant!r}: {path} is not a valid safetensors file ({error})."
        ) from error


def load_model(
    variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a verified checkpoint: ``(model in eval mode on CPU, metadata)``."""
    if variant not in VARIANTS:
        raise CheckpointError(f"Unknown model {variant!r}; choose one of {', '.join(VARIANTS)}.")
    metadata = read_metadata(variant, directory)
    state = _read_weights(variant, directory, metadata["sha256"])
    model = build_model(variant)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"Model {variant!r}: the weights do not fit the {variant} architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"Model {variant!r}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"the {variant} architecture needs {tuple(expected[key].shape)}."
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"Model {variant!r}: tensor {key} holds NaN or infinite values.")
    model.load_state_dict(state)
    return model.eval(), metadata


def available_variants(directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> list[str]:
    """Variants whose weights and metadata files both exist (not yet verified)."""
    return [
        v
        for v in VARIANTS
        if weights_path(v, directory).exists() and metadata_path(v, directory).exists()
    ]
