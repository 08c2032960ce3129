"""Predictions from the trained checkpoints: a ``Predictor`` API and the ``python -m core.predict`` CLI.

Each model is loaded once (verified by :func:`core.checkpoints.load_model`) and fed the input
under its *own* normalisation. A prediction carries the probabilities, the top 3 and a
``rejected`` flag for a confidence threshold; blank input is never predicted.

CLI::

    python -m core.predict [--model NAME|all] [--threshold T | --keep P | --no-reject] [--raw]
                           [--json] FILE...

Probabilities are calibrated (temperature scaling) and each model rejects ("not a digit, or too
unsure") at its stored operating point, which keeps 98% of real digits, unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, load_model
from core.inputs import image_to_input, to_input
from core.locks import model_lock
from core.models import VARIANTS
from core.preprocess import (
    BLANK_MESSAGE,
    MAX_UPLOAD_BYTES,
    InvalidImageError,
    PreprocessResult,
    preprocess,
)
from core.selective import is_rejected, threshold_for_keep

TOP_K = 3
BATCH_SIZE = 1000
DEFAULT_CLI_MODEL = "cnn3"


@dataclass(frozen=True)
class Prediction:
    """One model's answer for one image.

    ``probabilities`` are the softmax over the 10 digits, calibrated (``logits / temperature``)
    unless ``calibrated`` is False; ``confidence`` is the top one. ``score`` is the calibrated
    top probability, whatever is shown: ``rejected`` is True when it is below ``threshold`` (the
    rule of :func:`core.selective.is_rejected`), and ``reason`` then says why in a sentence.
    ``keep`` is the share of real (validation) digits that threshold keeps, when known.
    """

    model: str
    probabilities: np.ndarray
    digit: int
    confidence: float
    top3: list[tuple[int, float]]
    rejected: bool
    threshold: float = 0.0
    score: float | None = None
    calibrated: bool = True
    keep: float | None = None

    @property
    def reason(self) -> str | None:
        """Why the prediction is rejected (None when it is accepted)."""
        if not self.rejected:
            return None
        score = self.confidence if self.score is None else self.score
        kept = f", which keeps {self.keep:.1%} of real digits" if self.keep is not None else ""
        return (
            f"not a digit, or too unsure: its best guess {self.digit} has a calibrated "
            f"confidence of {format_percent(score)}, below the threshold of {format_percent(self.threshold)}"
            f"{kept}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the full probability vector)."""
        return {
            "model": self.model,
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "top3": [[digit, round(p, 6)] for digit, p in self.top3],
            "rejected": self.rejected,
        }


def format_percent(value: float) -> str:
    """A probability as a percentage with as many decimals as it needs (99.93%, not 100%)."""
    for decimals in (0, 1, 2, 3):
        text = f"{100 * value:.{decimals}f}"
        if float(text) < 100 or value >= 1:
            return f"{text}%"
    return f"{100 * value:.4f}%"


def make_prediction(
    model: str,
    probabilities: np.ndarray,
    threshold: float,
    *,
    score: float | None = None,
    calibrated: bool = True,
    keep: float | None = None,
) -> Prediction:
    """A :class:`Prediction` from a probability vector (ties go to the smaller digit).

    ``score`` is the calibrated confidence the rejection rule uses (the vector's top value when
    omitted). A vector that is not 10 finite probabilities comes from a broken model, never from
    an image: it raises :class:`CheckpointError` so no NaN ever reaches a user as an answer.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if probabilities.shape != (10,) or not np.isfinite(probabilities).all():
        raise CheckpointError(
            f"Model {model!r} produced no valid probabilities (NaN, infinite or the wrong "
            "number): its checkpoint is damaged. Restore it from git or retrain."
        )
    order = np.argsort(-probabilities, kind="stable")
    top = [(int(d), float(probabilities[d])) for d in order[:TOP_K]]
    digit, confidence = top[0]
    score = confidence if score is None else float(score)
    if not math.isfinite(score):
        raise CheckpointError(
            f"Model {model!r} produced a NaN confidence: its checkpoint is damaged."
        )
    return Prediction(
        model,
        probabilities,
        digit,
        confidence,
        top,
        is_rejected(score, threshold),
        float(threshold),
        score,
        calibrated,
        keep,
    )


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"The confidence threshold must be between 0 and 1, not {threshold}.")
    return threshold


def _as_image(result: PreprocessResult | np.ndarray) -> np.ndarray:
    """The 28×28 float image of a preprocessing result or array; blank input is refused."""
    if isinstance(result, PreprocessResult):
        if result.blank:
            raise InvalidImageError(BLANK_MESSAGE)
        return result.image
    image = np.asarray(result)
    if image.shape != (28, 28):
        raise ValueError(f"Expected a 28×28 image, got shape {image.shape}.")
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise ValueError("The 28×28 image holds NaN or infinite values.")
    if not image.any():
        raise InvalidImageError(BLANK_MESSAGE)
    return np.clip(image, 0.0, 1.0)


class Predictor:
    """Loads the chosen variants once and predicts with each under its own normalisation.

    ``models`` and ``metadata`` are keyed by variant. Every forward pass here holds the model's
    :func:`core.locks.model_lock`, the same lock ``core.explain`` holds while Captum hooks it.
    """

    def __init__(
        self,
        variants: Sequence[str] = VARIANTS,
        directory: str | os.PathLike[str] = DEFAULT_DIRECTORY,
    ) -> None:
        self.variants: tuple[str, ...] = tuple(variants)
        if not self.variants:
            raise ValueError("Choose at least one model variant.")
        self.directory = Path(directory)
        self.models: dict[str, nn.Module] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        for variant in self.variants:
            model, metadata = load_model(variant, self.directory)
            self.models[variant] = model
            self.metadata[variant] = metadata

    def normalization(self, variant: str) -> dict[str, float]:
        """The normalisation ``variant`` was trained with."""
        return self.metadata[variant]["normalization"]

    def temperature(self, variant: str) -> float:
        """The temperature fitted on the validation split (1.0 for a checkpoint without one)."""
        return float(self.metadata[variant].get("temperature", 1.0))

    def operating_curve(self, variant: str) -> dict | None:
        """``{"keep": [...], "threshold": [...]}`` measured on the validation split, if stored."""
        return self.metadata[variant].get("rejection", {}).get("curve")

    def default_keep(self, variant: str) -> float | None:
        """The share of real digits the default operating point keeps, if stored."""
        return self.metadata[variant].get("rejection", {}).get("default_keep")

    def threshold_for(self, variant: str, keep: float | None = None) -> float:
        """The calibrated-confidence threshold that keeps ``keep`` of real digits (the model's
        default operating point when None); 0 (no rejection) for a checkpoint without a curve."""
        curve = self.operating_curve(variant)
        keep = self.default_keep(variant) if keep is None else keep
        if curve is None or keep is None:
            return 0.0
        return threshold_for_keep(curve, keep)

    @torch.no_grad()
    def predict(
        self,
        result: PreprocessResult | np.ndarray,
        threshold: float | None = None,
        variants: Sequence[str] | None = None,
        *,
        keep: float | None = None,
        calibrated: bool = True,
    ) -> dict[str, Prediction]:
        """Predictions for one image, keyed by variant (all loaded ones unless ``variants``).

        ``result`` is a :class:`PreprocessResult` or a 28×28 image in [0, 1] (uint8 is scaled).
        Blank input raises :class:`InvalidImageError`. Probabilities are calibrated with each
        checkpoint's temperature (raw softmax with ``calibrated=False``). A prediction is
        rejected when its calibrated confidence is below ``threshold`` (0 rejects nothing); with
        no ``threshold``, each model uses the threshold that keeps ``keep`` of real digits on
        its validation split (its default operating point when ``keep`` is None too).
        """
        if threshold is not None:
            threshold = _check_threshold(threshold)
        chosen = self.variants if variants is None else tuple(variants)
        unknown = [v for v in chosen if v not in self.models]
        if unknown:
            raise KeyError(f"Model {unknown[0]!r} is not loaded; loaded: {', '.join(self.models)}.")
        image = _as_image(result)
        predictions = {}
        for variant in chosen:
            x = image_to_input(image, self.normalization(variant))
            with model_lock(self.models[variant]):
                logits = self.models[variant](x).double()
            scaled = torch.softmax(logits / self.temperature(variant), dim=1)[0].numpy()
            shown = scaled if calibrated else torch.softmax(logits, dim=1)[0].numpy()
            if threshold is None:
                cut = self.threshold_for(variant, keep)
                kept = keep if keep is not None else self.default_keep(variant)
            else:
                cut, kept = threshold, None
            predictions[variant] = make_prediction(
                variant,
                shown,
                cut,
                score=float(scaled.max()) if np.isfinite(scaled).all() else float("nan"),
                calibrated=calibrated,
                keep=kept if cut > 0 else None,
            )
        return predictions

    @torch.no_grad()
    def predict_batch(
        self, images: np.ndarray | torch.Tensor, variant: str, calibrated: bool = True
    ) -> np.ndarray:
        """Probabilities ``[N, 10]`` (float32) of ``variant`` for 28×28 images, calibrated with
        the checkpoint's temperature like :meth:`predict` (raw softmax with ``calibrated=False``).

        ``images`` are ``[N, 28, 28]`` or ``[N, 1, 28, 28]``, floats in [0, 1] or uint8.
        """
        if variant not in self.models:
            raise KeyError(f"Model {variant!r} is not loaded; loaded: {', '.join(self.models)}.")
        batch = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if batch.dim() == 4 and batch.shape[1] == 1:
            batch = batch[:, 0]
        if batch.dim() != 3 or tuple(batch.shape[1:]) != (28, 28):
            raise ValueError(f"Expected images of shape [N, 28, 28], got {tuple(batch.shape)}.")
        if batch.dtype != torch.uint8:
            batch = batch.float()
        model, normalization = self.models[variant], self.normalization(variant)
        temperature = self.temperature(variant) if calibrated else 1.0
        chunks = []
        for start in range(0, batch.shape[0], BATCH_SIZE):
            x = to_input(batch[start : start + BATCH_SIZE], normalization)
            with model_lock(self.models[variant]):
                chunks.append(torch.softmax(model(x).float() / temperature, dim=1))
        if not chunks:
            return np.zeros((0, 10), dtype=np.float32)
        return torch.cat(chunks).numpy()


# --------------------------------------------------------------------------- files and CLI


@dataclass(frozen=True)
class FileResult:
    """The outcome for one file: predictions by variant, or an error sentence."""

    file: str
    predictions: dict[str, Prediction]
    error: str | None = None


def read_upload(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes, refusing anything over :data:`MAX_UPLOAD_BYTES` without reading it all.

    Only regular files are read: a named pipe (which would block the reader forever), a device
    (``/dev/zero`` never ends), a socket or a directory raises :class:`InvalidImageError` with a
    sentence. The file is opened without blocking and checked on the open descriptor, so it cannot
    be swapped for a pipe between the check and the read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidImageError(_not_a_file_message(mode))
        handle = open(descriptor, "rb", closefd=True)  # noqa: SIM115 - closed just below
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        data = handle.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidImageError(
            f"The file is larger than the limit of {MAX_UPLOAD_BYTES / 2**20:g} MB. "
            "Please use a smaller image."
        )
    return data


def _os_error_message(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "No such file."
    if isinstance(error, IsADirectoryError):
        return "This is a directory, not an image file."
    if isinstance(error, PermissionError):
        return "Permission denied: the file cannot be read."
    return f"The file cannot be read ({error.strerror or error.__class__.__name__})."


def _not_a_file_message(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "This is a directory, not an image file."
    if stat.S_ISFIFO(mode):
        return "This is a named pipe (FIFO), not an image file; it was not read."
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "This is a device, not an image file; it was not read."
    if stat.S_ISSOCK(mode):
        return "This is a socket, not an image file; it was not read."
    return "This is not a regular file, so it was not read."


def predict_file(
    path: str | os.PathLike[str],
    predictor: Predictor,
    threshold: float | None = None,
    *,
    keep: float | None = None,
    calibrated: bool = True,
) -> FileResult:
    """Read, preprocess and predict one file; every failure becomes ``error``, a sentence.

    Unreadable or invalid files, and a model that produces no valid probabilities (a damaged
    checkpoint: :class:`CheckpointError`), give an error for this file, never a traceback or a
    NaN prediction, so the files after it are still processed. ``threshold``, ``keep`` and
    ``calibrated`` are :meth:`Predictor.predict`'s (default: each model's operating point).
    """
    name = os.fsdecode(path)
    try:
        result = preprocess(read_upload(path))
        if result.blank:
            return FileResult(name, {}, BLANK_MESSAGE)
        return FileResult(
            name, predictor.predict(result, threshold, keep=keep, calibrated=calibrated)
        )
    except InvalidImageError as error:
        return FileResult(name, {}, str(error))
    except CheckpointError as error:
        return FileResult(name, {}, f"The model cannot predict: {error}")
    except OSError as error:
        return FileResult(name, {}, _os_error_message(error))
    except MemoryError:
        return FileResult(name, {}, "The file needs more memory than is available to process.")
    except Exception as error:  # a bug must not stop the other files: report it, go on
        return FileResult(
            name, {}, f"The file could not be processed (internal error {type(error).__name__})."
        )


def predict_files(
    paths: Iterable[str | os.PathLike[str]],
    predictor: Predictor,
    threshold: float | None = None,
    *,
    keep: float | None = None,
    calibrated: bool = True,
) -> Iterator[FileResult]:
    """:func:`predict_file` for each path, lazily, so results can be printed as they come."""
    if threshold is not None:
        threshold = _check_threshold(threshold)
    for path in paths:
        yield predict_file(path, predictor, threshold, keep=keep, calibrated=calibrated)


def printable(text: str) -> str:
    """``text`` with control characters, escapes and undecodable bytes shown as escapes."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )


def _threshold_arg(text: str) -> float:
    try:
        return _check_threshold(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from error


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m core.predict",
        description="Predict the digit in image files (PNG, JPEG, BMP, WebP, GIF) with the "
        "trained CNNs. Prints one line per file and model; exits 1 if any file failed.",
    )
    parser.add_argument(
        "--model",
        choices=[*VARIANTS, "all"],
        default=DEFAULT_CLI_MODEL,
        help=f"which model predicts (default: {DEFAULT_CLI_MODEL}); 'all' prints one line per "
        "file per model",
    )
    rejection = parser.add_mutually_exclusive_group()
    rejection.add_argument(
        "--threshold",
        type=_threshold_arg,
        default=None,
        metavar="T",
        help="reject predictions whose calibrated confidence is below T, in [0, 1] (default: "
        "each model's operating point, which keeps 98%% of real digits)",
    )
    rejection.add_argument(
        "--keep",
        type=_threshold_arg,
        default=None,
        metavar="P",
        help="reject at the threshold that keeps the share P of real digits, e.g. 0.95",
    )
    rejection.add_argument(
        "--no-reject",
        action="store_true",
        help="never reject: always answer with the most probable digit",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="print raw softmax probabilities instead of calibrated ones (rejection still uses "
        "the calibrated confidence)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per line: {"file", "model", "digit", "confidence", "top3", '
        '"rejected"} or {"file", "error"}',
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=DEFAULT_DIRECTORY,
        metavar="DIR",
        help="directory holding the checkpoints (default: the repository's checkpoints/)",
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="image files (names starting with '-' work too; '--' ends the options)",
    )
    return parser


def _option_action(parser: argparse.ArgumentParser, arg: str) -> argparse.Action | None:
    """The option ``arg`` names (``--model``, ``--model=x``, an unambiguous ``--mod``), if any."""
    name = arg.split("=", 1)[0] if arg.startswith("--") else arg
    actions = {option: action for action in parser._actions for option in action.option_strings}
    if name in actions:
        return actions[name]
    if name.startswith("--") and len(name) > 2:
        matches = {actions[o] for o in actions if o.startswith(name) and o.startswith("--")}
        if len(matches) == 1:
            return matches.pop()
    return None


def _files_after_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with every file name moved after ``--``, so names starting with '-' are files.

    An argument starting with '-' that is no option is a file when such a file exists; otherwise
    it is refused with a message that suggests ``--`` (argparse's own message would claim the
    files were missing).
    """
    options: list[str] = []
    files: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            files.extend(argv[index:])
            break
        if not arg.startswith("-") or arg == "-":
            files.append(arg)
            continue
        action = _option_action(parser, arg)
        if action is None:
            if os.path.lexists(arg):
                files.append(arg)
                continue
            parser.error(
                f"unknown option {printable(arg)!r}. If it is a file name, put '--' before the "
                f"file names: python -m core.predict [options] -- {printable(arg)}"
            )
        options.append(arg)
        takes_value = action.nargs != 0 and not (arg.startswith("--") and "=" in arg)
        if takes_value and index < len(argv):
            options.append(argv[index])
            index += 1
    return [*options, "--", *files]


def _text_line(file: str, prediction: Prediction) -> str:
    top3 = "  ".join(f"{digit}:{p:.4f}" for digit, p in prediction.top3)
    verdict = f"  REJECTED: {prediction.reason}" if prediction.rejected else ""
    kind = "confidence" if prediction.calibrated else "raw softmax"
    return (
        f"{printable(file)}: {prediction.model} predicts {prediction.digit} "
        f"({kind} {prediction.confidence:.4f}; top 3 {top3}){verdict}"
    )


_INVALID_OUTPUT = (
    "The model produced no valid probabilities (NaN or infinite): its checkpoint is damaged. "
    "Restore it from git or retrain."
)


def _prediction_lines(outcome: FileResult, args: argparse.Namespace) -> list[str] | None:
    """The output lines of a predicted file, or None if any figure is not a finite number."""
    lines = []
    for prediction in outcome.predictions.values():
        figures = [prediction.confidence, *(p for _, p in prediction.top3)]
        if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in figures):
            return None
        if args.json:
            lines.append(
                json.dumps({"file": outcome.file, **prediction.to_dict()}, allow_nan=False)
            )
        else:
            lines.append(_text_line(outcome.file, prediction))
    return lines


def _emit(line: str, stream=None) -> None:
    print(line, file=stream or sys.stdout, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 all files predicted, 1 any failed)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(
        _files_after_options(parser, sys.argv[1:] if argv is None else list(argv))
    )
    variants = list(VARIANTS) if args.model == "all" else [args.model]
    try:
        predictor = Predictor(variants, args.checkpoints)
    except CheckpointError as error:
        message = f"Cannot load the model: {error}"
        if args.json:
            for file in args.files:
                _emit(json.dumps({"file": file, "error": message}))
        _emit(f"error: {printable(message)}", sys.stderr)
        return 1
    failed = False
    try:
        threshold = 0.0 if args.no_reject else args.threshold
        outcomes = predict_files(
            args.files, predictor, threshold, keep=args.keep, calibrated=not args.raw
        )
        for outcome in outcomes:
            lines = [] if outcome.error is not None else _prediction_lines(outcome, args)
            if outcome.error is not None or lines is None:
                failed = True
                error = outcome.error or _INVALID_OUTPUT
                if args.json:
                    _emit(json.dumps({"file": outcome.file, "error": error}))
                else:
                    _emit(f"{printable(outcome.file)}: error: {error}")
                continue
            for line in lines:
                _emit(line)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1 if failed else 0
    except KeyboardInterrupt:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
