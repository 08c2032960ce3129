"""Precompute what the dashboard reads for a checkpoint: metadata figures, eval arrays, model card.

Heavy work (the 10,000 test images, out-of-distribution sets) is done here, ahead of time, so every
dashboard page opens instantly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.checkpoints import load_model, write_metadata
from core.data import load_mnist_test
from core.evalfile import write_eval_file
from core.evaluate import predict_logits, softmax, summarize
from core.model_card import render_model_card


def evaluate_variant(
    variant: str,
    directory: Path,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
) -> dict:
    """Evaluate one checkpoint, update its metadata, eval file and model card; return the metadata."""
    model, metadata = load_model(variant, directory)
    logits = predict_logits(model, test_images, metadata["normalization"])
    probabilities = softmax(logits)
    labels = test_labels.numpy()
    summary = summarize(probabilities, labels)
    metadata.update(
        test_accuracy=summary["accuracy"],
        test_errors=int((probabilities.argmax(1) != labels).sum()),
        per_class=summary["per_class"],
        test_ece=summary["ece"],
        confusion=summary["confusion"].tolist(),
    )
    write_eval_file(
        directory / f"{variant}.eval.npz",
        logits=logits.astype(np.float32),
        probabilities=probabilities.astype(np.float32),
        labels=labels.astype(np.int64),
    )
    write_metadata(variant, metadata, directory)
    (directory / f"{variant}.md").write_text(render_model_card(metadata), encoding="utf-8")
    return metadata


def evaluate_all(variants: list[str], directory: Path, data_dir: str | None) -> list[dict]:
    """Evaluate each variant in turn; returns their metadata."""
    test_images, test_labels = load_mnist_test(data_dir)
    return [evaluate_variant(v, directory, test_images, test_labels) for v in variants]
