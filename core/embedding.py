"""Where a digit lies among the others: penultimate features, PCA, a t-SNE layout, neighbours.

A model's *features* are the input of its last ``nn.Linear`` (for ``logreg`` that is the 784
normalised pixels). They are reduced once, by a PCA fitted on the 10,000 MNIST test digits, to
:data:`BANK_DIMS` principal directions: the first two are the PCA map, all of them the space where
neighbours are searched (L2). The t-SNE layout of the test digits is computed ahead of time
(``scripts/embedding.py``); a new digit is placed on it at the mean position of its nearest test
digits. Everything is plain NumPy (t-SNE: sparse attraction, FFT-gridded repulsion), deterministic.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.checkpoints import DEFAULT_DIRECTORY
from core.evalfile import EvalFileError
from core.inputs import to_input
from core.locks import model_lock
from core.tsne import tsne

BANK_DIMS = 64
TRAIN_BANK_SIZE = 5_500
BANK_SEED = 0
PLACE_K = 10
_CHUNK = 512


@dataclass(frozen=True)
class Pca:
    """A PCA basis: ``mean`` [D], ``components`` [K, D] (orthonormal rows), ``variance_ratio`` [K]."""

    mean: np.ndarray
    components: np.ndarray
    variance_ratio: np.ndarray

    def project(self, features: np.ndarray) -> np.ndarray:
        """Coordinates ``[N, K]`` of ``features`` [N, D] (or [D] → [K]) in this basis (float32)."""
        centred = np.asarray(features, np.float64) - self.mean
        return (centred @ self.components.astype(np.float64).T).astype(np.float32)


def fit_pca(features: np.ndarray, dims: int) -> Pca:
    """The top ``dims`` principal directions of ``features`` [N, D], each signed so its largest
    entry is positive (a deterministic orientation)."""
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
    order = np.argsort(-values, kind="stable")[: min(dims, x.shape[1])]
    components = vectors[:, order].T
    signs = np.sign(components[np.arange(len(order)), np.abs(components).argmax(axis=1)])
    total = float(values.clip(min=0).sum()) or 1.0
    return Pca(
        mean.astype(np.float32),
        (components * signs[:, None]).astype(np.float32),
        (values[order].clip(min=0) / total).astype(np.float32),
    )


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (the layer whose input is the feature vector)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("The model has no nn.Linear layer, so it has no penultimate features.")
    return linears[-1]


@torch.no_grad()
def extract(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    normalization: Mapping[str, float],
    batch_size: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, D]`` and logits ``[N, 10]`` (float32) of 28×28 images (uint8 or [0, 1]).

    The features are read by a forward pre-hook on :func:`last_linear`, held under the model's
    lock so no other session's forward pass runs through the hook.
    """
    batch = torch.as_tensor(np.asarray(images))
    if batch.dim() == 2:
        batch = batch.unsqueeze(0)
    captured: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    with model_lock(model):
        handle = last_linear(model).register_forward_pre_hook(
            lambda _module, inputs: captured.append(inputs[0].detach().flatten(1).float())
        )
        try:
            for start in range(0, len(batch), batch_size):
                chunk = batch[start : start + batch_size]
                chunk = chunk if chunk.dtype == torch.uint8 else chunk.float()
                logits.append(model(to_input(chunk, normalization)).float())
        finally:
            handle.remove()
    if not logits:
        return np.zeros((0, last_linear(model).in_features), np.float32), np.zeros(
            (0, 10), np.float32
        )
    return torch.cat(captured).numpy(), torch.cat(logits).numpy()


def nearest(
    bank: np.ndarray, query: np.ndarray, k: int, bank_sq: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and L2 distances of the ``k`` rows of ``bank`` [N, K] closest to ``query`` [K],
    nearest first (ties: the smaller index first)."""
    bank = np.asarray(bank, np.float32)
    q = np.asarray(query, np.float32).reshape(-1)
    sq = (bank * bank).sum(axis=1) if bank_sq is None else bank_sq
    # einsum, not BLAS: a threaded gemv stalls when the CPUs are busy with other sessions.
    d2 = np.maximum(sq - 2.0 * np.einsum("ij,j->i", bank, q) + float(q @ q), 0.0)
    k = min(k, len(bank))
    part = np.argpartition(d2, k - 1)[:k] if k < len(bank) else np.arange(len(bank))
    order = part[np.lexsort((part, d2[part]))]
    return order, np.sqrt(d2[order])


def place(
    query: np.ndarray,
    test_bank: np.ndarray,
    layout: np.ndarray,
    k: int = PLACE_K,
    bank_sq: np.ndarray | None = None,
) -> np.ndarray:
    """A new point on a precomputed layout: the mean position of its ``k`` nearest test digits."""
    index, _ = nearest(test_bank, query, k, bank_sq)
    return np.asarray(layout, np.float64)[index].mean(axis=0)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` of ``arrays`` with fixed timestamps and order: the same arrays give
    the same bytes (``np.savez_compressed`` stamps the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(data, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data.getvalue(), compresslevel=9)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the shipped file

FORMAT_VERSION = 1
MAX_EMBEDDING_BYTES = 32 * 2**20
# Array name → shape in symbols: D feature width, K bank dims, T test digits, B training digits.
_SHAPES = {
    "pca_mean": "D",
    "pca_components": "KD",
    "pca_variance": "K",
    "test_bank": "TK",
    "tsne": "T2",
    "train_bank": "BK",
    "test_labels": "T",
    "test_predictions": "T",
    "train_labels": "B",
    "train_index": "B",
}
_INTEGER = ("test_labels", "test_predictions", "train_labels", "train_index")


class EmbeddingFileError(EvalFileError):
    """An embedding file is missing, unreadable, out of date or does not follow the schema."""


def embedding_path(variant: str, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Path:
    """Where ``scripts/embedding.py`` writes a variant's map and neighbour bank."""
    return Path(directory) / f"embedding_{variant}.npz"


@dataclass(frozen=True)
class Embedding:
    """One model's precomputed map and neighbour bank, for checkpoint ``sha256``.

    ``test_bank`` / ``train_bank`` are the features of the MNIST test digits and of a seeded
    subset of the training split (``train_index`` into ``core.data.load_mnist(seed=split_seed)``'s
    ``train_images``) in the PCA basis; the first two columns of ``test_bank`` are the PCA map.
    """

    variant: str
    sha256: str
    pca: Pca
    test_bank: np.ndarray
    test_labels: np.ndarray
    test_predictions: np.ndarray
    tsne: np.ndarray
    train_bank: np.ndarray
    train_labels: np.ndarray
    train_index: np.ndarray
    split_seed: int
    test_sq: np.ndarray = field(init=False, repr=False, compare=False)
    train_sq: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Squared norms of the banks, once: every neighbour search needs them.
        for bank in ("test", "train"):
            values = np.asarray(getattr(self, f"{bank}_bank"), np.float32)
            object.__setattr__(self, f"{bank}_sq", (values * values).sum(axis=1))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the file: coordinates float16, the basis float32, labels uint8."""
        return {
            "format_version": np.int64(FORMAT_VERSION),
            "variant": np.str_(self.variant),
            "sha256": np.str_(self.sha256),
            "split_seed": np.int64(self.split_seed),
            "pca_mean": self.pca.mean.astype(np.float32),
            "pca_components": self.pca.components.astype(np.float32),
            "pca_variance": self.pca.variance_ratio.astype(np.float32),
            "test_bank": self.test_bank.astype(np.float16),
            "tsne": self.tsne.astype(np.float16),
            "train_bank": self.train_bank.astype(np.float16),
            "test_labels": self.test_labels.astype(np.uint8),
            "test_predictions": self.test_predictions.astype(np.uint8),
            "train_labels": self.train_labels.astype(np.uint8),
            "train_index": self.train_index.astype(np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Embedding:
        """Rebuild and validate (names, dtypes, shapes, finiteness, label range), as float32."""
        missing = [k for k in (*_SHAPES, "format_version", "variant", "sha256", "split_seed")
                   if k not in arrays]  # fmt: skip
        if missing:
            raise EmbeddingFileError(f"it lacks {', '.join(missing)}")
        if (
            np.asarray(arrays["format_version"]).shape
            or int(arrays["format_version"]) != FORMAT_VERSION
        ):
            raise EmbeddingFileError("it has another format version")
        sizes: dict[str, int] = {"2": 2}
        values = {}
        for name, symbols in _SHAPES.items():
            value = np.asarray(arrays[name])
            kinds = "iu" if name in _INTEGER else "f"
            if value.dtype.kind not in kinds or value.ndim != len(symbols):
                raise EmbeddingFileError(f"{name} has the wrong type or number of dimensions")
            for symbol, length in zip(symbols, value.shape, strict=True):
                if sizes.setdefault(symbol, length) != length:
                    raise EmbeddingFileError(f"{name} has shape {value.shape}, inconsistent")
            if kinds == "f" and not np.isfinite(value).all():
                raise EmbeddingFileError(f"{name} holds NaN or infinite values")
            values[name] = value.astype(np.int64 if kinds == "iu" else np.float32)
        if sizes["K"] < 2 or sizes["T"] < PLACE_K or sizes["B"] < 1:
            raise EmbeddingFileError("it holds too few dimensions or digits")
        for name in ("test_labels", "test_predictions", "train_labels"):
            if values[name].min() < 0 or values[name].max() > 9:
                raise EmbeddingFileError(f"{name} holds values outside 0-9")
        if values["train_index"].min() < 0:
            raise EmbeddingFileError("train_index holds negative indices")
        pca = Pca(values.pop("pca_mean"), values.pop("pca_components"), values.pop("pca_variance"))
        return cls(
            variant=str(arrays["variant"]),
            sha256=str(arrays["sha256"]),
            pca=pca,
            split_seed=int(arrays["split_seed"]),
            **values,
        )


def compute_embedding(
    model: nn.Module,
    metadata: Mapping[str, object],
    test: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    *,
    train_size: int = TRAIN_BANK_SIZE,
    dims: int = BANK_DIMS,
    **tsne_options: float,
) -> Embedding:
    """A model's embedding from (images, labels) of the test set and of its training split.

    The training bank is a seeded (:data:`BANK_SEED`) subset of ``train_size`` digits.
    """
    normalization = metadata["normalization"]
    rng = np.random.default_rng(BANK_SEED)
    chosen = np.sort(rng.choice(len(train[0]), min(train_size, len(train[0])), replace=False))
    test_features, test_logits = extract(model, test[0], normalization)
    train_features, _ = extract(model, np.asarray(train[0])[chosen], normalization)
    pca = fit_pca(test_features, dims)
    test_bank = pca.project(test_features)
    return Embedding(
        variant=str(metadata["variant"]),
        sha256=str(metadata["sha256"]),
        pca=pca,
        test_bank=test_bank,
        test_labels=np.asarray(test[1]),
        test_predictions=test_logits.argmax(axis=1),
        tsne=tsne(test_bank, fit_pca(test_bank, 2).project(test_bank), **tsne_options),
        train_bank=pca.project(train_features),
        train_labels=np.asarray(train[1])[chosen],
        train_index=chosen,
        split_seed=int(metadata["training"]["seed"]),  # type: ignore[index]
    )
