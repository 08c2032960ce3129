"""MNIST through torchvision, from a data directory that works offline, with a fixed validation split.

Where the data lives: ``--data-dir`` flag, else ``$DIGIT_LENS_DATA``, else ``./data``. A directory
holding the genuine ``MNIST/raw/*.gz`` archives works without network: torchvision verifies their
MD5 sums, skips the download and extracts them. The archives are linked into a writable cache and
extracted there, so a shared or read-only directory is never written to. Without files, torchvision downloads them as usual.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

ENV_VAR = "DIGIT_LENS_DATA"
CACHE_ENV_VAR = "DIGIT_LENS_CACHE"
DEFAULT_DATA_DIR = Path("data")
VALIDATION_SIZE = 5_000
RAW_ARCHIVES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class DataUnavailableError(RuntimeError):
    """MNIST is neither in the data directory nor downloadable; the message says what to do."""


@dataclass(frozen=True)
class MnistSplits:
    """MNIST as uint8 image tensors ``[N, 28, 28]`` and int64 labels ``[N]``.

    ``train`` excludes the validation images; ``test`` is only for final evaluation.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def resolve_data_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """Data directory by precedence: explicit flag, then ``$DIGIT_LENS_DATA``, then ``./data``."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR


def cache_dir() -> Path:
    """Writable place for extracted archives when the data directory is read-only."""
    env = os.environ.get(CACHE_ENV_VAR)
    base = Path(env) if env else Path.home() / ".cache" / "digit-lens"
    return base.expanduser()


def _has_archives(raw: Path) -> bool:
    return all((raw / name).is_file() for name in RAW_ARCHIVES)


def _has_extracted(raw: Path) -> bool:
    return all((raw / name.removesuffix(".gz")).is_file() for name in RAW_ARCHIVES)


def prepare_root(data_dir: Path) -> Path:
    """Return a root torchvision can use without writing into a directory that only holds archives.

    Torchvision extracts ``raw/*.gz`` next to the archives. A directory holding just the archives
    may be shared or read-only, so they are symlinked (copied where links are impossible) into
    :func:`cache_dir` and extracted there. Otherwise ``data_dir`` is used as is (already
    extracted, or empty so torchvision downloads into it).
    """
    raw = data_dir / "MNIST" / "raw"
    if _has_extracted(raw) or not _has_archives(raw):
        return data_dir
    cached_raw = cache_dir() / "data" / "MNIST" / "raw"
    cached_raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_ARCHIVES:
        target = cached_raw / name
        if target.exists():
            continue
        try:
            target.symlink_to((raw / name).resolve())
        except OSError:
            shutil.copy2(raw / name, target)
    return cache_dir() / "data"


def _remove_if_empty(folders: Iterable[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def load_mnist_dataset(train: bool, data_dir: str | os.PathLike[str] | None = None) -> MNIST:
    """One torchvision MNIST split, downloading only if the archives are not already there."""
    # torchvision is imported here, not at the top: importing it pulls in torch._dynamo (seconds),
    # which the dashboard's cold start does not need
    from torchvision.datasets import MNIST

    directory = resolve_data_dir(data_dir)
    root = prepare_root(directory)
    created = [p for p in (root, root / "MNIST", root / "MNIST" / "raw") if not p.exists()]
    try:
        return MNIST(root=str(root), train=train, download=True)
    except (RuntimeError, OSError) as error:
        _remove_if_empty(reversed(created))  # a failed download leaves no empty folders behind
        raise DataUnavailableError(
            f"MNIST could not be found in {directory.resolve()} or downloaded ({error}). "
            f"Put the four MNIST archives in {directory.resolve() / 'MNIST' / 'raw'}, or point "
            f"--data-dir / ${ENV_VAR} at a directory that has MNIST/raw/*.gz, or connect to the "
            "internet so torchvision can download them."
        ) from error


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, validation) index split of ``range(n)`` fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return order[val_size:].sort().values, order[:val_size].sort().values


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    val_size: int = VALIDATION_SIZE,
    seed: int = 0,
) -> MnistSplits:
    """Train/validation/test splits of MNIST as in-memory tensors."""
    train = load_mnist_dataset(True, data_dir)
    test = load_mnist_dataset(False, data_dir)
    train_idx, val_idx = split_indices(len(train.data), val_size, seed)
    return MnistSplits(
        train_images=train.data[train_idx],
        train_labels=train.targets[train_idx],
        val_images=train.data[val_idx],
        val_labels=train.targets[val_idx],
        test_images=test.data,
        test_labels=test.targets,
    )


def load_mnist_test(
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Only the 10,000 test images (uint8 ``[N, 28, 28]``) and labels, for evaluation and browsing."""
    test = load_mnist_dataset(False, data_dir)
    return test.data, test.targets


def normalization_stats(images: torch.Tensor) -> dict[str, float]:
    """Mean and std of uint8 images scaled to [0, 1], the normalisation a checkpoint records."""
    pixels = images.float().div_(255.0)
    return {"mean": round(pixels.mean().item(), 4), "std": round(pixels.std().item(), 4)}
