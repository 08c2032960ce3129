"""Data directory resolution (flag > env > default), offline use, and a clear error without data."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from core import data
from core.data import DataUnavailableError, load_mnist_dataset, resolve_data_dir, split_indices


def test_flag_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGIT_LENS_DATA", "/from/env")
    assert resolve_data_dir("/from/flag") == Path("/from/flag")
    assert resolve_data_dir(None) == Path("/from/env")
    monkeypatch.delenv("DIGIT_LENS_DATA")
    assert resolve_data_dir(None) == Path("data")


def test_clear_error_without_data_or_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataUnavailableError) as info:
        load_mnist_dataset(train=False, data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "MNIST/raw" in message and "DIGIT_LENS_DATA" in message and "--data-dir" in message
    assert not (tmp_path / "empty").exists()  # the failed download left no empty folders behind


def test_a_failed_download_keeps_folders_that_were_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "urllib.request.urlopen", lambda *_a, **_k: (_ for _ in ()).throw(OSError("offline"))
    )
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "notes.txt").write_text("mine")
    with pytest.raises(DataUnavailableError):
        load_mnist_dataset(train=False, data_dir=tmp_path)
    assert (tmp_path / "MNIST" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "MNIST" / "raw").exists()


def test_split_is_fixed_by_seed_and_disjoint() -> None:
    train_a, val_a = split_indices(100, 10, seed=0)
    train_b, val_b = split_indices(100, 10, seed=0)
    _, val_c = split_indices(100, 10, seed=1)
    assert torch.equal(val_a, val_b) and torch.equal(train_a, train_b)
    assert not torch.equal(val_a, val_c)
    assert len(val_a) == 10 and len(train_a) == 90
    assert set(train_a.tolist()).isdisjoint(val_a.tolist())


def test_archives_only_directory_is_never_written(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory holding just the .gz archives (like ../shared/data) is extracted in the cache.
    archives = tmp_path / "archives" / "MNIST" / "raw"
    archives.mkdir(parents=True)
    for name in data.RAW_ARCHIVES:
        (archives / name).symlink_to(data_dir / "MNIST" / "raw" / name)
    monkeypatch.setenv("DIGIT_LENS_CACHE", str(tmp_path / "cache"))
    test = load_mnist_dataset(train=False, data_dir=tmp_path / "archives")
    assert test.data.shape == (10_000, 28, 28)
    assert sorted(p.name for p in archives.iterdir()) == sorted(data.RAW_ARCHIVES)
    assert (tmp_path / "cache" / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists()


def test_full_splits(data_dir: Path) -> None:
    splits = data.load_mnist(data_dir, seed=0)
    assert splits.train_images.shape == (55_000, 28, 28)
    assert splits.val_images.shape == (5_000, 28, 28)
    assert splits.test_images.shape == (10_000, 28, 28)
    assert splits.train_images.dtype == torch.uint8
    stats = data.normalization_stats(splits.train_images)
    assert abs(stats["mean"] - 0.1307) < 0.002 and abs(stats["std"] - 0.3081) < 0.002
