"""Safe checkpoints: weights in safetensors, metadata in JSON beside them, written atomically.

``load_model`` never unpickles anything. It reads only regular files of bounded size
(:func:`read_bounded`), checks they are not Git LFS pointers, that the metadata is a JSON object
of bounded nesting whose every field that code reads has the right type and range
(:data:`METADATA_SCHEMA`, the normalisation by :func:`core.inputs.check_normalization`), that the
weights' sha256 matches the metadata, that the tensors parse and match the variant's architecture
(key set, shapes and dtypes), are finite and bounded (``|w| < MAX_ABS_WEIGHT``) and that
BatchNorm running variances are not negative. Every failure is a :class:`CheckpointError` with a
readable message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from core.inputs import check_normalization
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
# The shipped metadata nests 6 deep; deeper JSON is not ours (and very deep JSON would exhaust
# the recursion of the parser or of code walking it).
MAX_JSON_DEPTH = 32
# Trained weights and BatchNorm statistics are within ±100; far larger values overflow float32
# activations into inf and NaN predictions.
MAX_ABS_WEIGHT = 1e4


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


# --------------------------------------------------------------------------- metadata schema


class _SchemaError(Exception):
    """A metadata field of the wrong type or out of range: ``where`` and what was expected."""

    def __init__(self, where: str, expected: str) -> None:
        super().__init__(where, expected)
        self.where, self.expected = where, expected


_Check = Callable[[Any, str], None]


def _show(bound: float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def _number(
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    finite: bool = True,
    optional: bool = False,
) -> _Check:
    """A real number (never a bool), whole if ``integer``, finite if ``finite``, in [low, high]."""
    kind = "a whole number" if integer else "a number"
    if low is not None and high is not None:
        kind += f" from {_show(low)} to {_show(high)}"
    elif low is not None:
        kind += f" of at least {_show(low)}"
    if optional:
        kind += " or null"

    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _SchemaError(where, kind)
        if integer and not isinstance(value, int):
            raise _SchemaError(where, kind)
        if isinstance(value, int) and not -1e308 < value < 1e308:  # would not fit a float
            raise _SchemaError(where, kind)
        if isinstance(value, float) and math.isnan(value):
            if finite:
                raise _SchemaError(where, kind)
            return
        if isinstance(value, float) and math.isinf(value) and finite:
            raise _SchemaError(where, kind)
        if (low is not None and value < low) or (high is not None and value > high):
            raise _SchemaError(where, kind)

    return check


def _text(max_length: int = 1000) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or len(value) > max_length:
            raise _SchemaError(where, f"text of at most {max_length} characters")

    return check


def _boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _SchemaError(where, "true or false")


def _sha256(value: Any, where: str) -> None:
    if not (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value)):
        raise _SchemaError(where, "64 lowercase hexadecimal digits")


def _list(item: _Check, max_length: int, length: int | None = None) -> _Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) > max_length:
            raise _SchemaError(where, f"a list of at most {max_length:,} items")
        if length is not None and len(value) != length:
            raise _SchemaError(where, f"a list of {length} items")
        for index, entry in enumerate(value):
            item(entry, f"{where}[{index}]")

    return check


def _mapping(value_check: _Check, max_length: int = 1000) -> _Check:
    """An object with any (string) keys, every value passing ``value_check``."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict) or len(value) > max_length:
            raise _SchemaError(where, f"an object of at most {max_length:,} entries")
        for key, entry in value.items():
            value_check(entry, f"{where}.{key}")

    return check


def _record(fields: Mapping[str, _Check], required: tuple[str, ...] = ()) -> _Check:
    """An object whose listed fields, where present, pass their checks (others are ignored)."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _SchemaError(where, "an object")
        for key in required:
            if key not in value:
                raise _SchemaError(f"{where}.{key}", "present")
        for key, field_check in fields.items():
            if key in value:
                field_check(value[key], f"{where}.{key}")

    return check


_FRACTION = _number(0, 1)
_COUNT = _number(0, 10**12, integer=True)
_SEED = _number(-(2**63), 2**64, integer=True)
_METRIC = _number(finite=False, optional=True)

# Only the fields that code reads are checked (the model card reads these of the training
# config); others may change with the code that writes them.
_TRAIN_CONFIG = _record(
    {
        "epochs": _COUNT,
        "batch_size": _COUNT,
        "max_lr": _number(0),
        "weight_decay": _number(0),
        "label_smoothing": _FRACTION,
        "patience": _COUNT,
        "seed": _SEED,
        "augment": _boolean,
        "augmentation": _record({"stroke_probs": _list(_FRACTION, 16)}),
    }
)


def _operating_curve(value: Any, where: str) -> None:
    """``{"keep": [...], "threshold": [...]}``: equally long, non-empty lists of fractions
    (:func:`core.selective.threshold_for_keep` interpolates one on the other)."""
    _record({"keep": _list(_FRACTION, 1000), "threshold": _list(_FRACTION, 1000)}, ("keep",))(
        value, where
    )
    if "threshold" not in value or not 0 < len(value["keep"]) == len(value["threshold"]):
        raise _SchemaError(where, "equally long, non-empty keep and threshold lists")


_DIGITS_KEPT = _record(
    {
        "n": _COUNT,
        "kept": _FRACTION,
        "accuracy": _FRACTION,
        "accuracy_kept": _number(0, 1, finite=False),
    }
)


def _optional(check: _Check) -> _Check:
    """``check``, or null."""

    def validate(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return validate


_OOD_SET = _record(
    {
        "n": _COUNT,
        "auroc_msp": _FRACTION,
        "auroc_energy": _FRACTION,
        "rejection_msp": _mapping(_FRACTION, 16),
        "rejection_energy": _mapping(_FRACTION, 16),
        "label": _text(200),
    }
)
# Every metadata field that core/, dashboard/ and scripts/ read, with its type and range (fields
# nobody reads are not checked).
METADATA_SCHEMA: _Check = _record(
    {
        "variant": _text(40),
        "sha256": _sha256,
        "params": _number(0, 10**10, integer=True),
        "normalization": _record({"mean": _number(), "std": _number()}, ("mean", "std")),
        "test_accuracy": _FRACTION,
        "per_class": _list(
            _record(
                {
                    "class": _number(0, 9, integer=True),
                    "precision": _FRACTION,
                    "recall": _FRACTION,
                    "f1": _FRACTION,
                    "support": _COUNT,
                },
                ("class", "precision", "recall", "f1", "support"),
            ),
            10,
        ),
        "history": _list(
            _record(
                {
                    "epoch": _number(0, 10**6, integer=True),
                    "train_loss": _METRIC,
                    "train_accuracy": _METRIC,
                    "val_loss": _METRIC,
                    "val_accuracy": _METRIC,
                    "lr": _METRIC,
                    "seconds": _METRIC,
                },
                ("epoch",),
            ),
            100_000,
        ),
        "training": _record(
            {
                "config": _TRAIN_CONFIG,
                "seed": _SEED,
                "epochs_run": _COUNT,
                "best_epoch": _COUNT,
                "best_val_accuracy": _FRACTION,
                "stopped_early": _boolean,
                "seconds": _number(0),
                "train_size": _COUNT,
                "val_size": _COUNT,
                "device": _text(),
                "threads": _COUNT,
                "torch": _text(),
            }
        ),
        "config": _record({"channels": _list(_number(1, 4096, integer=True), 64)}),
        "architecture": _list(
            _record(
                {
                    "layer": _text(),
                    "type": _text(),
                    "output_shape": _list(_COUNT, 8),
                    "params": _COUNT,
                },
                ("layer", "type", "output_shape", "params"),
            ),
            10_000,
        ),
        "test_errors": _COUNT,
        "test_ece": _FRACTION,
        "test_ece_scaled": _FRACTION,
        "temperature": _number(1e-3, 1e3),
        "calibration": _record(
            {
                "temperature": _number(1e-3, 1e3),
                "ece_before": _FRACTION,
                "ece_after": _FRACTION,
                "nll_before": _number(0),
                "nll_after": _number(0),
                "val_nll_before": _number(0),
                "val_nll_after": _number(0),
                "fitted_on": _text(),
                "val_size": _COUNT,
                "bins": _COUNT,
            }
        ),
        "selective": _record(
            {
                "aurc": _FRACTION,
                "accuracy_at_coverage": _mapping(_number(0, 1, finite=False), 16),
            }
        ),
        "rejection": _record(
            {
                "default_keep": _FRACTION,
                "threshold": _FRACTION,
                "temperature": _number(1e-3, 1e3),
                "curve": _operating_curve,
                "at_default": _record(
                    {
                        "mnist_test": _DIGITS_KEPT,
                        "canvas_digits": _optional(_DIGITS_KEPT),
                        "sets": _mapping(_FRACTION, 64),
                    }
                ),
            }
        ),
        "ood": _record(
            {
                "sets": _mapping(_OOD_SET, 64),
                "thresholds": _mapping(_mapping(_number(), 16), 16),
                "coverages": _list(_FRACTION, 16),
                "n_per_set": _COUNT,
                "seed": _SEED,
                "scores": _mapping(_text(200), 16),
                "unavailable": _mapping(_text(), 64),
            }
        ),
    },
    REQUIRED_METADATA,
)


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


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


def read_json_object(
    path: Path,
    what: str,
    limit: int = MAX_METADATA_BYTES,
    error: type[CheckpointError] = CheckpointError,
) -> dict[str, Any]:
    """A bounded, regular JSON file holding one object of limited nesting, else ``error``."""
    raw = read_bounded(path, limit, what, error)
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what}: {path} is not valid JSON ({exc}).") from exc
    except RecursionError as exc:
        raise error(f"{what}: {path} nests deeper than {MAX_JSON_DEPTH} levels.") from exc
    if not isinstance(value, dict):
        raise error(f"{what}: {path} is not a JSON object.")
    if _json_depth_exceeds(value, MAX_JSON_DEPTH):
        raise error(f"{what}: {path} nests deeper than {MAX_JSON_DEPTH} levels.")
    return value


def read_metadata(
    variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY
) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, validated for the fields other code relies on."""
    path = metadata_path(variant, directory)
    metadata = read_json_object(path, f"Model {variant!r} metadata")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(f"Model {variant!r}: metadata {path} lacks {', '.join(missing)}.")
    try:
        METADATA_SCHEMA(metadata, "metadata")
    except _SchemaError as error:
        where = error.where.removeprefix("metadata.")
        raise CheckpointError(
            f"Model {variant!r}: metadata {path} has an invalid {where} (expected "
            f"{error.expected}). {RESTORE_HINT}"
        ) from None
    if metadata["variant"] != variant:
        raise CheckpointError(
            f"Model {variant!r}: metadata {path} describes {metadata['variant']!r} instead."
        )
    try:
        check_normalization(metadata["normalization"])
    except ValueError as error:
        raise CheckpointError(
            f"Model {variant!r}: metadata {path} has an unusable normalization: {error}"
        ) from None
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
        if tensor.dtype != expected[key].dtype:
            raise CheckpointError(
                f"Model {variant!r}: tensor {key} holds {tensor.dtype}, "
                f"the {variant} architecture needs {expected[key].dtype}."
            )
        if not tensor.is_floating_point():
            continue
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"Model {variant!r}: tensor {key} holds NaN or infinite values.")
        if tensor.numel() and float(tensor.abs().max()) >= MAX_ABS_WEIGHT:
            raise CheckpointError(
                f"Model {variant!r}: tensor {key} holds values of {float(tensor.abs().max()):.3g}, "
                f"beyond the ±{MAX_ABS_WEIGHT:g} any trained model has. {RESTORE_HINT}"
            )
        if key.endswith("running_var") and tensor.numel() and float(tensor.min()) < 0:
            raise CheckpointError(
                f"Model {variant!r}: tensor {key} holds a negative variance. {RESTORE_HINT}"
            )
    model.load_state_dict(state)
    return model.eval(), metadata


def available_variants(directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> list[str]:
    """Variants whose weights and metadata files both exist (not yet verified)."""
    return [
        v
        for v in VARIANTS
        if weights_path(v, directory).exists() and metadata_path(v, directory).exists()
    ]
