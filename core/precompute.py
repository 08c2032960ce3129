"""Precompute what the dashboard reads for a checkpoint: metadata figures, eval arrays, model card.

Heavy work (the 10,000 test images, out-of-distribution sets, temperature scaling) is done here,
ahead of time, so every dashboard page opens instantly. See :func:`evaluate_variant` for the keys
written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from core.calibration import calibration_report
from core.canvas_style import render_mnist_canvas
from core.checkpoints import load_model, read_metadata, write_metadata
from core.data import load_mnist, load_mnist_test
from core.evalfile import EvalFile, OODSet, Reliability, eval_path, write_eval_file
from core.evaluate import predict_logits, softmax, summarize
from core.model_card import render_model_card
from core.ood import (
    OOD_LABELS,
    OOD_SETS,
    SCORE_LABELS,
    OODDataUnavailableError,
    load_ood_set,
    msp_score,
    ood_report,
)
from core.preprocess import preprocess
from core.selective import (
    DEFAULT_KEEP,
    REPORT_COVERAGES,
    accuracy_at_coverage,
    area_under_risk_coverage,
    downsample_curve,
    is_rejected,
    operating_curve,
    risk_coverage,
    threshold_for_keep,
)

OOD_SAMPLES = 2000
OOD_SEED = 0
OOD_EXAMPLES = 16
CURVE_POINTS = 500
RELIABILITY_BINS = 15
# All 10,000 test digits re-drawn on the canvas: on 2,000, sampling noise alone gives a perfectly
# calibrated model an ECE of about 0.5% (measured by drawing labels from its own probabilities),
# the size of the target.
CANVAS_SAMPLES = 10_000


def build_ood_sets(
    n: int = OOD_SAMPLES, seed: int = OOD_SEED, data_dir: str | os.PathLike[str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every OOD set that can be built here, and for the others the reason they cannot."""
    sets: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    for name in OOD_SETS:
        try:
            sets[name] = load_ood_set(name, n, seed, data_dir)
        except OODDataUnavailableError as error:
            unavailable[name] = str(error)
            print(f"warning: OOD set {name} skipped: {error}", file=sys.stderr)
    return sets, unavailable


def build_canvas_digits(
    test_images: torch.Tensor, test_labels: torch.Tensor, n: int = CANVAS_SAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test digits re-drawn on the canvas (``core.canvas_style``, digit ``i`` with
    its own generator ``(seed, i)``) and preprocessed as the dashboard does: uint8 images, labels."""
    n = min(n, len(test_images))
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        canvas = render_mnist_canvas(test_images[i].numpy(), np.random.default_rng([seed, i]))[0]
        images[i] = np.round(preprocess(canvas).image * 255.0).astype(np.uint8)
    return images, test_labels[:n].numpy().astype(np.int64)


def operating_report(
    threshold: float,
    temperature: float,
    test: tuple[np.ndarray, np.ndarray],
    canvas: tuple[np.ndarray, np.ndarray] | None,
    ood_logits: Mapping[str, np.ndarray],
) -> dict:
    """What the operating point does: digits kept and accuracy of the kept ones (MNIST test,
    canvas-style), and the share of every OOD set rejected. JSON-ready."""

    def digits(logits: np.ndarray, labels: np.ndarray) -> dict:
        kept = ~is_rejected(msp_score(logits, temperature), threshold)
        right = logits.argmax(1) == labels
        return {
            "n": len(labels),
            "kept": float(kept.mean()),
            "accuracy": float(right.mean()),
            "accuracy_kept": float(right[kept].mean()) if kept.any() else float("nan"),
        }

    return {
        "mnist_test": digits(*test),
        "canvas_digits": digits(*canvas) if canvas is not None else None,
        "sets": {
            name: float(is_rejected(msp_score(logits, temperature), threshold).mean())
            for name, logits in ood_logits.items()
        },
    }


def _validation_split(
    metadata: dict, data_dir: str | os.PathLike[str] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    seed = int(metadata.get("training", {}).get("seed", 0))
    splits = load_mnist(data_dir, seed=seed)
    return splits.val_images, splits.val_labels


def evaluate_variant(
    variant: str,
    directory: Path,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    val_images: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    ood_sets: Mapping[str, np.ndarray] | None = None,
    ood_unavailable: Mapping[str, str] | None = None,
    canvas_digits: tuple[np.ndarray, np.ndarray] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> dict:
    """Evaluate one checkpoint, update its metadata, eval file and model card; return the metadata.

    The validation split (for temperature scaling) defaults to the one training used, rebuilt from
    the data directory with the seed in the metadata; the OOD sets default to
    :func:`build_ood_sets`; ``canvas_digits`` (from :func:`build_canvas_digits`) adds the
    canvas-style test digits to the evaluation.

    The evaluation file is a :class:`core.evalfile.EvalFile` (its module lists the keys).

    Metadata keys added: ``temperature``, ``test_ece_scaled``, ``calibration``, ``selective``,
    ``ood``.
    """
    model, metadata = load_model(variant, directory)
    normalization = metadata["normalization"]
    logits = predict_logits(model, test_images, normalization)
    probabilities = softmax(logits)
    labels = test_labels.numpy()
    summary = summarize(probabilities, labels)

    if val_images is None or val_labels is None:
        val_images, val_labels = _validation_split(metadata, data_dir)
    val_logits = predict_logits(model, val_images, normalization)
    calibration = calibration_report(
        val_logits, val_labels.numpy(), logits, labels, bins=RELIABILITY_BINS
    )
    temperature = float(calibration["temperature"])
    curve = risk_coverage(softmax(logits, temperature), labels)
    val_curve = operating_curve(msp_score(val_logits, temperature))
    threshold = threshold_for_keep(val_curve, DEFAULT_KEEP)

    if ood_sets is None:
        ood_sets, ood_unavailable = build_ood_sets(data_dir=data_dir)
    # Stored as float16 to keep the file small; every figure is computed from the stored values,
    # so the dashboard recomputes exactly what the metadata says.
    ood_logits = {
        name: predict_logits(model, torch.from_numpy(np.array(images)), normalization)
        .astype(np.float16)
        .astype(np.float32)
        for name, images in ood_sets.items()
    }
    report = ood_report(logits, ood_logits, temperature=temperature)
    canvas_logits = None
    if canvas_digits is not None:
        canvas_logits = (
            predict_logits(model, torch.from_numpy(canvas_digits[0]), normalization)
            .astype(np.float16)
            .astype(np.float32)
        )
    for name, entry in report["sets"].items():
        entry["label"] = OOD_LABELS.get(name, name)

    before, after = calibration["reliability_before"], calibration["reliability_after"]
    evaluation = EvalFile(
        logits=logits.astype(np.float32),
        probabilities=probabilities.astype(np.float32),
        labels=labels.astype(np.int64),
        temperature=float(calibration["temperature"]),
        reliability_before=Reliability(**before),
        reliability_after=Reliability(**after),
        risk_coverage=downsample_curve(curve, CURVE_POINTS),
        ood={
            name: OODSet(
                out.astype(np.float16), np.asarray(ood_sets[name][:OOD_EXAMPLES], np.uint8)
            )
            for name, out in ood_logits.items()
        },
        canvas_logits=canvas_logits,
        canvas_labels=None if canvas_digits is None else canvas_digits[1],
    )

    metadata.update(
        test_accuracy=summary["accuracy"],
        test_errors=int((probabilities.argmax(1) != labels).sum()),
        per_class=summary["per_class"],
        test_ece=summary["ece"],
        confusion=summary["confusion"].tolist(),
        temperature=calibration["temperature"],
        test_ece_scaled=calibration["ece_after"],
        calibration={
            key: calibration[key]
            for key in (
                "temperature",
                "ece_before",
                "ece_after",
                "nll_before",
                "nll_after",
                "val_nll_before",
                "val_nll_after",
            )
        }
        | {"fitted_on": "validation", "val_size": len(val_labels), "bins": RELIABILITY_BINS},
        selective={
            "aurc": area_under_risk_coverage(curve),
            "accuracy_at_coverage": {
                f"{c:.2f}": accuracy_at_coverage(curve, c) for c in REPORT_COVERAGES
            },
        },
        rejection={
            "score": "calibrated maximum probability (softmax of logits / temperature)",
            "temperature": temperature,
            "fitted_on": "validation",
            "default_keep": DEFAULT_KEEP,
            "threshold": threshold,
            "curve": val_curve,
            "at_default": operating_report(
                threshold,
                temperature,
                (logits, labels),
                None if canvas_logits is None else (canvas_logits, canvas_digits[1]),
                ood_logits,
            ),
        },
        ood={
            **report,
            "n_per_set": OOD_SAMPLES,
            "seed": OOD_SEED,
            "scores": SCORE_LABELS,
            "unavailable": dict(ood_unavailable or {}),
        },
    )
    write_eval_file(eval_path(variant, directory), evaluation)
    write_metadata(variant, metadata, directory)
    (directory / f"{variant}.md").write_text(render_model_card(metadata), encoding="utf-8")
    return metadata


def evaluate_all(variants: list[str], directory: Path, data_dir: str | None) -> list[dict]:
    """Evaluate each variant in turn (test set, validation split, OOD sets built once)."""
    test_images, test_labels = load_mnist_test(data_dir)
    ood_sets, unavailable = build_ood_sets(data_dir=data_dir)
    canvas_digits = build_canvas_digits(test_images, test_labels)
    splits_by_seed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    results = []
    for variant in variants:
        seed = int(read_metadata(variant, directory).get("training", {}).get("seed", 0))
        if seed not in splits_by_seed:
            splits = load_mnist(data_dir, seed=seed)
            splits_by_seed[seed] = (splits.val_images, splits.val_labels)
        val_images, val_labels = splits_by_seed[seed]
        results.append(
            evaluate_variant(
                variant,
                directory,
                test_images,
                test_labels,
                val_images=val_images,
                val_labels=val_labels,
                ood_sets=ood_sets,
                ood_unavailable=unavailable,
                canvas_digits=canvas_digits,
                data_dir=data_dir,
            )
        )
    return results
