"""Checkpoint round trip and every bad checkpoint giving a readable CheckpointError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoints import (
    CheckpointError,
    load_model,
    metadata_path,
    save_checkpoint,
    weights_path,
)
from core.inputs import MNIST_NORMALIZATION
from core.models import build_model

META = {
    "params": 0,
    "normalization": dict(MNIST_NORMALIZATION),
    "test_accuracy": 0.5,
    "per_class": [],
    "history": [],
    "training": {"seed": 0},
}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(build_model("cnn2"), "cnn2", META, tmp_path)
    return tmp_path


def rewrite_with_matching_hash(directory: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace the weights and fix the recorded sha256, so only the content check can object."""
    import hashlib

    save_file(state, weights_path("cnn2", directory))
    meta = json.loads(metadata_path("cnn2", directory).read_text())
    meta["sha256"] = hashlib.sha256(weights_path("cnn2", directory).read_bytes()).hexdigest()
    metadata_path("cnn2", directory).write_text(json.dumps(meta))


def test_round_trip_restores_weights_and_metadata(saved: Path) -> None:
    torch.manual_seed(0)
    original = build_model("cnn2").eval()
    model, meta = load_model("cnn2", saved)
    assert not model.training
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), original(x))
    assert meta["variant"] == "cnn2" and len(meta["sha256"]) == 64
    assert meta["normalization"] == META["normalization"]


def test_no_temp_files_left_behind(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["cnn2.json", "cnn2.safetensors"]


def test_missing_weights(saved: Path) -> None:
    weights_path("cnn2", saved).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model("cnn2", saved)


def test_missing_metadata(saved: Path) -> None:
    metadata_path("cnn2", saved).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model("cnn2", saved)


def test_git_lfs_pointer(saved: Path) -> None:
    weights_path("cnn2", saved).write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    )
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        load_model("cnn2", saved)


def test_truncated_file(saved: Path) -> None:
    path = weights_path("cnn2", saved)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model("cnn2", saved)


def test_tampered_byte(saved: Path) -> None:
    path = weights_path("cnn2", saved)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model("cnn2", saved)


def test_truncated_file_with_matching_hash_is_still_refused(saved: Path) -> None:
    import hashlib

    path = weights_path("cnn2", saved)
    path.write_bytes(path.read_bytes()[:1000])
    meta = json.loads(metadata_path("cnn2", saved).read_text())
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    metadata_path("cnn2", saved).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_model("cnn2", saved)


def test_wrong_architecture(saved: Path) -> None:
    rewrite_with_matching_hash(saved, build_model("cnn3").state_dict())
    with pytest.raises(CheckpointError, match="do not fit the cnn2 architecture"):
        load_model("cnn2", saved)


def test_wrong_shape(saved: Path) -> None:
    state = build_model("cnn2").state_dict()
    state["head.fc2.weight"] = torch.zeros(11, state["head.fc2.weight"].shape[1])
    rewrite_with_matching_hash(saved, state)
    with pytest.raises(CheckpointError, match="shape"):
        load_model("cnn2", saved)


def test_nan_weights(saved: Path) -> None:
    state = build_model("cnn2").state_dict()
    state["features.block1.conv.weight"][0, 0, 0, 0] = float("nan")
    rewrite_with_matching_hash(saved, state)
    with pytest.raises(CheckpointError, match="NaN"):
        load_model("cnn2", saved)


def test_corrupt_metadata(saved: Path) -> None:
    metadata_path("cnn2", saved).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model("cnn2", saved)


def test_metadata_missing_fields(saved: Path) -> None:
    meta = json.loads(metadata_path("cnn2", saved).read_text())
    del meta["normalization"]
    metadata_path("cnn2", saved).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks normalization"):
        load_model("cnn2", saved)


def test_unknown_variant(saved: Path) -> None:
    with pytest.raises(CheckpointError, match="Unknown model"):
        load_model("resnet", saved)


def test_weights_are_never_unpickled(saved: Path) -> None:
    # A pickle (torch.save) renamed to .safetensors must be refused, not executed.
    path = weights_path("cnn2", saved)
    torch.save(build_model("cnn2").state_dict(), path)
    with pytest.raises(CheckpointError):
        load_model("cnn2", saved)


def test_read_bounded_reads_only_regular_files_of_bounded_size(tmp_path: Path) -> None:
    import os
    import threading

    from core.checkpoints import read_bounded

    regular = tmp_path / "ok.bin"
    regular.write_bytes(b"12345")
    assert read_bounded(regular, 5, "test") == b"12345"
    with pytest.raises(CheckpointError, match="5 bytes, more than the 4 allowed"):
        read_bounded(regular, 4, "test")
    link = tmp_path / "zero.bin"
    link.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling.bin"
    dangling.symlink_to(tmp_path / "nowhere")
    loop = tmp_path / "loop.bin"
    loop.symlink_to(loop)
    cases = [(link, "not a regular file"), (fifo, "not a regular file")]
    cases += [(tmp_path, "not a regular file"), (dangling, "missing"), (loop, "cannot read")]
    for path, message in cases:
        outcome: list[BaseException] = []

        def attempt(path: Path = path, outcome: list[BaseException] = outcome) -> None:
            try:
                read_bounded(path, 1024, "test")
            except BaseException as error:  # handed to the assertion below
                outcome.append(error)

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), f"{path.name}: blocked"
        assert isinstance(outcome[0], CheckpointError) and message in str(outcome[0]), outcome
    pointer = tmp_path / "pointer.bin"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        read_bounded(pointer, 1024, "test")
