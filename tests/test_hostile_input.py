"""Issue 11, "Hostile input, round two": one regression test per row (core side).

Every hostile file is made here with Pillow, ``struct`` and ``zlib`` (no binary fixtures). The
time and memory rows assert a documented error or a finite result *and* a bound: CPU time by
``time.process_time`` and peak memory by the process's peak resident set (``VmHWM``, reset before
each measurement), or, where Linux does not offer that, by ``tracemalloc``; one test also runs the
decoder in a fresh subprocess and reads ``ru_maxrss``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import json
import math
import os
import stat
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import core.decode as decode_module
import core.predict as predict_module
from core.checkpoints import (
    MAX_METADATA_BYTES,
    CheckpointError,
    load_model,
    metadata_path,
    read_metadata,
    save_checkpoint,
    weights_path,
)
from core.decode import MAX_UPLOAD_BYTES, InvalidImageError
from core.inputs import MNIST_NORMALIZATION
from core.model_card import render_model_card
from core.models import build_model
from core.predict import Prediction, predict_file, read_upload
from core.preprocess import PreprocessResult, preprocess
from tests.imagefactory import encode, png_chunk, stroke_mask

ROOT = Path(__file__).resolve().parent.parent
CPU_LIMIT_S = 2.0
MEMORY_LIMIT = 500 * 2**20
VARIANT = "cnn1"
LARGE = MAX_UPLOAD_BYTES - 4096  # structure bombs fill (almost) the whole upload limit


# --------------------------------------------------------------------------- hostile files


def palette_png(
    width: int,
    height: int,
    trns: bytes = b"\x00",
    orientation: int | None = None,
    palette: bytes = b"\x00\x00\x00\xff\xff\xff",
) -> bytes:
    """A palette PNG of index 1 everywhere, with a tRNS chunk and optionally EXIF orientation.

    Rows are compressed in pieces, so 40-megapixel images are built without 40 MB of raw pixels.
    """
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x01" * width
    rows_per_piece = max(1, 1_000_000 // len(row))
    parts, done = [], 0
    while done < height:
        count = min(rows_per_piece, height - done)
        parts.append(compressor.compress(row * count))
        done += count
    parts.append(compressor.flush())
    exif = b""
    if orientation is not None:
        tags = Image.Exif()
        tags[0x0112] = orientation
        exif = png_chunk(b"eXIf", tags.tobytes()[6:])
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + png_chunk(b"PLTE", palette)
        + png_chunk(b"tRNS", trns)
        + exif
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def _jpeg_first_scan(data: bytes) -> int:
    """Offset of the first SOS marker of a (small, Pillow-written) JPEG."""
    position = 2
    while data[position + 1] != 0xDA:
        position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return position


def progressive_jpeg_bomb(scans: int, side: int = 6000) -> bytes:
    """A progressive JPEG whose header claims ``side``² pixels, followed by ``scans`` empty scans.

    Every scan walks all of the image's 8×8 blocks, so decoding time grows with ``scans`` while
    the file stays tiny (10 bytes a scan).
    """
    small = encode(Image.new("L", (16, 16), 128), "JPEG", progressive=True)
    first_scan = _jpeg_first_scan(small)
    head = bytearray(small[:first_scan])
    sof = head.find(b"\xff\xc2")
    head[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    length = struct.unpack(">H", small[first_scan + 2 : first_scan + 4])[0]
    scan = small[first_scan : first_scan + 2 + length]
    return bytes(head) + scan * scans + b"\xff\xd9"


def webp_bomb(side: int = 6000) -> bytes:
    """A tiny lossy WebP of ``side``² plain pixels (65 KB for 6000²)."""
    return encode(Image.new("RGB", (side, side), "white"), "WEBP", quality=1)


def gif_comment_bomb() -> bytes:
    """A GIF whose comment before the image is millions of one-byte sub-blocks."""
    base = encode(Image.new("L", (8, 8), 0), "GIF")
    flags = base[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    comment = b"\x21\xfe" + b"\x01x" * (LARGE // 2) + b"\x00"
    return base[:start] + comment + base[start:]


def png_chunk_bomb() -> bytes:
    """A PNG with hundreds of thousands of empty private chunks before its image."""
    base = encode(Image.new("L", (8, 8), 0), "PNG")
    empty = png_chunk(b"prIv", b"")
    return base[:33] + empty * (LARGE // len(empty)) + base[33:]


def jpeg_segment_bomb() -> bytes:
    """A JPEG with two million empty comment segments before its frame header."""
    base = encode(Image.new("L", (8, 8), 0), "JPEG")
    return base[:2] + b"\xff\xfe\x00\x02" * (LARGE // 4) + base[2:]


def jpeg_junk_bomb() -> bytes:
    """A JPEG with megabytes of stray bytes between segments (Pillow reads them one by one)."""
    base = encode(Image.new("L", (8, 8), 0), "JPEG")
    second = 4 + struct.unpack(">H", base[4:6])[0]  # after SOI and the APP0 segment
    return base[:second] + b"\x00" * (LARGE // 2) + base[second:]


def bmp_rle_bomb() -> bytes:
    """An RLE8 BMP of four million one-pixel runs (Pillow decodes RLE in Python)."""
    width, height = 4000, 2000
    runs = b"\x01\x00" * ((LARGE - 2000) // 2)
    palette = b"\x00\x00\x00\x00" * 256
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 0, 0, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + info + palette + runs


def bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming ``width`` × ``height`` pixels, with no pixels behind it."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def malformed_mpo() -> bytes:
    """An MPO whose MP index is damaged: Pillow warns it is 'a malformed MPO file'."""
    first, second = Image.new("RGB", (32, 32), "white"), Image.new("RGB", (32, 32), "black")
    data = bytearray(encode(first, "MPO", save_all=True, append_images=[second]))
    data[data.find(b"MPF\x00") + 49] = 215
    return bytes(data)


def corrupt_exif_jpeg() -> bytes:
    """A JPEG whose EXIF is cut short: Pillow warns 'Corrupt EXIF data'."""
    tags = Image.Exif()
    tags[0x0112] = 6
    tags[0x010F] = "camera" * 5
    data = bytearray(encode(Image.new("RGB", (32, 32), "white"), "JPEG", exif=tags.tobytes()))
    data[data.find(b"Exif") + 15] = 5
    return bytes(data)


def digit_png() -> bytes:
    """A clean black-on-white 7."""
    ink = stroke_mask(7)
    return encode(Image.fromarray(np.rint((1 - ink) * 255).astype(np.uint8)), "PNG")


# --------------------------------------------------------------------------- measuring


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """``(result or raised exception, CPU seconds, peak extra bytes)`` of ``fn()``.

    The peak is the growth of the process's peak resident set (everything: Pillow's C buffers,
    NumPy, Python); where it cannot be reset, tracemalloc's peak of Python/NumPy allocations.
    """
    gc.collect()
    by_rss = _reset_peak_rss()
    if by_rss:
        before = _status_kib("VmRSS") or 0
    else:
        tracemalloc.start()
    start = time.process_time()
    try:
        outcome: Any = fn()
    except Exception as error:  # the caller asserts which
        outcome = error
    cpu = time.process_time() - start
    if by_rss:
        peak = ((_status_kib("VmHWM") or 0) - before) * 1024
    else:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, cpu, peak


def assert_valid_result(result: PreprocessResult) -> None:
    assert isinstance(result, PreprocessResult), result
    assert result.image.shape == (28, 28) and np.isfinite(result.image).all()
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert torch.isfinite(result.tensor).all()


def assert_documented_or_valid(outcome: Any) -> None:
    """A sentence-long InvalidImageError or a valid, finite result: nothing else."""
    if isinstance(outcome, Exception):
        assert isinstance(outcome, InvalidImageError), repr(outcome)
        message = str(outcome)
        assert message.endswith(".") and "Traceback" not in message
    else:
        assert_valid_result(outcome)


def assert_bounded(data: bytes, *, error: str | None = None) -> Any:
    """Preprocess hostile ``data`` within the CPU and memory limits; return the outcome."""
    outcome, cpu, peak = measure(lambda: preprocess(data))
    assert_documented_or_valid(outcome)
    if error is not None:
        assert isinstance(outcome, InvalidImageError) and error in str(outcome), outcome
    assert cpu < CPU_LIMIT_S, f"{cpu:.2f} s of CPU"
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MB"
    return outcome


def finishes(fn: Callable[[], Any], seconds: float = 10.0) -> Any:
    """``fn()`` run in a daemon thread: fails (instead of hanging the suite) if it blocks."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as error:  # handed to the caller
            box["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --------------------------------------------------------------------------- checkpoints


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
    save_checkpoint(build_model(VARIANT), VARIANT, META, tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_checkpoint(build_model(VARIANT), VARIANT, META, directory)
    return directory


def edit_metadata(directory: Path, **changes: Any) -> None:
    meta = json.loads(metadata_path(VARIANT, directory).read_text())
    meta.update(changes)
    metadata_path(VARIANT, directory).write_text(json.dumps(meta))


def rewrite_weights(directory: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace the weights and fix the recorded sha256, so only the content check can object."""
    save_file(state, weights_path(VARIANT, directory))
    digest = hashlib.sha256(weights_path(VARIANT, directory).read_bytes()).hexdigest()
    edit_metadata(directory, sha256=digest)


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, list]:
    """``core.predict.main(args)`` in-process: status, stdout, stderr and any warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = finishes(lambda: predict_module.main(args), 60)
    out, err = capsys.readouterr()
    return status, out, err, caught


def json_records(out: str) -> list[dict]:
    """Every stdout line as strict JSON (NaN or Infinity would fail to parse)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the CLI's JSON output")

    return [json.loads(line, parse_constant=refuse) for line in out.splitlines()]


# =========================================================================== row 1


def test_row1_palette_png_with_oversized_trns_is_read(tmp_path: Path, checkpoint_dir, capsys):
    data = palette_png(8, 8, trns=b"\x00" * 300)
    assert len(data) < 600
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(data))
        image.load()
        with pytest.raises(ValueError, match="palette index out of range"):
            image.convert("RGBA")  # what used to escape preprocess
    assert_valid_result(preprocess(data))
    hostile, good = tmp_path / "trns.png", tmp_path / "seven.png"
    hostile.write_bytes(data)
    good.write_bytes(digit_png())
    status, out, err, _ = run_main(
        [
            "--checkpoints",
            str(checkpoint_dir),
            "--model",
            VARIANT,
            "--json",
            str(hostile),
            str(good),
        ],
        capsys,
    )
    records = json_records(out)
    assert [r["file"] for r in records] == [str(hostile), str(good)]  # the file after it too
    assert status == 1 and "blank" in records[0]["error"]  # all transparent: nothing drawn
    assert "Traceback" not in err and "digit" in records[1]


# =========================================================================== row 2


@pytest.mark.parametrize("scans", [1_000, 3_000, 10_000])
def test_row2_progressive_jpeg_with_absurd_scan_counts_is_refused_at_once(scans: int) -> None:
    data = progressive_jpeg_bomb(scans)
    outcome, cpu, _ = measure(lambda: preprocess(data))
    assert isinstance(outcome, InvalidImageError) and "scans" in str(outcome)
    assert cpu < 0.2


def test_row2_progressive_jpeg_at_the_scan_limit_decodes_within_bounds() -> None:
    data = progressive_jpeg_bomb(decode_module.MAX_JPEG_SCANS)
    assert_valid_result(assert_bounded(data))


def test_row2_scan_work_is_budgeted_not_only_counted() -> None:
    """Fewer scans than the limit, but each over all components of a huge 4:4:4 CMYK frame."""
    small = encode(Image.new("CMYK", (16, 16)), "JPEG", progressive=True, subsampling=0)
    first_scan = _jpeg_first_scan(small)
    head = bytearray(small[:first_scan])
    sof = head.find(b"\xff\xc2")
    head[sof + 5 : sof + 9] = struct.pack(">HH", 6000, 6000)
    length = struct.unpack(">H", small[first_scan + 2 : first_scan + 4])[0]
    dc_scan = small[first_scan : first_scan + 2 + length]
    assert dc_scan[4] == 4  # the first scan covers all four components
    data = bytes(head) + dc_scan * 150 + b"\xff\xd9"
    assert_bounded(data, error="decoding passes")


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (jpeg_segment_bomb, "segments"),
        (jpeg_junk_bomb, "stray bytes"),
        (png_chunk_bomb, "chunks"),
        (gif_comment_bomb, "blocks"),
        (bmp_rle_bomb, "to decode"),
    ],
    ids=["jpeg-segments", "jpeg-junk", "png-chunks", "gif-comment", "bmp-rle"],
)
def test_row2_structures_that_cost_time_without_pixels_are_bounded(build, error: str) -> None:
    data = build()
    assert len(data) <= MAX_UPLOAD_BYTES
    assert_bounded(data, error=error)


def test_row2_decoding_runs_under_a_cpu_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("L", (2000, 2000), 255), "PNG")
    assert_valid_result(preprocess(data))
    monkeypatch.setattr(decode_module, "DECODE_CPU_SECONDS", 0.0)
    with pytest.raises(InvalidImageError, match=r"takes more than 0 s to decode"):
        preprocess(data)


# =========================================================================== row 3


ROW3 = {
    "40Mx1 palette+tRNS+EXIF6 PNG": lambda: palette_png(40_000_000, 1, orientation=6),
    "1x40M palette PNG": lambda: palette_png(1, 40_000_000),
    "6000x6000 WebP": lambda: webp_bomb(6000),
}


@functools.cache
def row3_file(name: str) -> bytes:
    """The row-3 files, built once (the WebP takes two seconds to encode)."""
    return ROW3[name]()


@pytest.mark.parametrize("name", list(ROW3))
def test_row3_tiny_files_stay_within_the_memory_budget(name: str) -> None:
    data = row3_file(name)
    assert len(data) < 100_000
    assert_bounded(data)


def test_row3_memory_estimate_counts_every_intermediate() -> None:
    """Bands × bytes × pixels, the row table, decoder buffers, transposes and the pipeline."""
    pixels = 6000 * 6000
    rgba = decode_module._estimate((6000, 6000), "RGBA", 0, 0).total
    palette = decode_module._estimate((6000, 6000), "P", 0, 0).total
    assert rgba - palette == 3 * pixels  # 4 bytes a pixel against 1
    transposed = decode_module._estimate((6000, 6000), "P", 0, 0, copies=2).total
    assert transposed - palette == pixels + 6000 * 8
    tall = decode_module._estimate((1, 40_000_000), "P", 0, 0).total
    assert tall > 40_000_000 * 9  # a pointer per row
    webp = decode_module._estimate((6000, 6000), "RGBA", 0, decode_module._WEBP_EXTRA_PER_PIXEL)
    assert webp.total > decode_module.MEMORY_BUDGET_BYTES
    with pytest.raises(InvalidImageError, match=r"too large to process.*MB of memory"):
        decode_module._check_memory(webp)


def test_row3_large_palette_images_are_converted_tile_by_tile(monkeypatch) -> None:
    """No full-size RGBA copy of a palette image: every conversion is of a bounded tile."""
    converted: list[int] = []
    real = Image.Image.convert

    def counting(self, *args, **kwargs):
        converted.append(self.width * self.height)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", counting)
    result = preprocess(palette_png(6000, 3000, trns=b"\x00\xff"))
    assert_valid_result(result)
    limit = decode_module._TILE_BYTES // decode_module._TILE_BYTES_PER_PIXEL
    assert converted and max(converted) <= limit < 6000 * 3000


def test_row3_measured_in_a_fresh_process(tmp_path: Path) -> None:
    """ru_maxrss of a fresh process (only Pillow and NumPy loaded) decoding each row-3 file."""
    paths = []
    for index, name in enumerate(ROW3):
        paths.append(tmp_path / f"row3-{index}")
        paths[-1].write_bytes(row3_file(name))
    script = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
from core.decode import InvalidImageError, to_array
path = sys.argv[1]
data = open(path, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
try:
    outcome = "array " + "x".join(map(str, to_array(data).shape))
except InvalidImageError as error:
    outcome = str(error)
cpu = time.process_time() - start
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps([outcome, cpu, grown]))
"""
    for name, path in zip(ROW3, paths, strict=True):
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outcome, cpu, grown = json.loads(done.stdout)
        assert outcome.startswith("array ") or outcome.endswith("."), (name, outcome)
        assert cpu < CPU_LIMIT_S and grown < MEMORY_LIMIT, (name, cpu, grown)


# =========================================================================== rows 4, 5, 7, 9


def test_row4_deeply_nested_metadata_is_a_checkpoint_error(saved: Path) -> None:
    original = metadata_path(VARIANT, saved).read_text()
    metadata_path(VARIANT, saved).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nests deeper"):
        load_model(VARIANT, saved)
    metadata_path(VARIANT, saved).write_text(original)
    nested: Any = 1
    for _ in range(40):
        nested = [nested]
    edit_metadata(saved, history=[{"epoch": 1, "extra": nested}])
    with pytest.raises(CheckpointError, match="nests deeper"):
        load_model(VARIANT, saved)


@pytest.mark.parametrize(
    "normalization",
    [
        {"mean": float("nan"), "std": 0.3},
        {"mean": float("inf"), "std": 0.3},
        {"mean": 1e308, "std": 0.3},
        {"mean": 10**400, "std": 0.3},
        {"mean": -0.5, "std": 0.3},
        {"mean": 0.1, "std": 1e-12},
        {"mean": 0.1, "std": 1e9},
        {"mean": 0.1, "std": 0.0},
        {"mean": 0.1, "std": -0.3},
        {"mean": 0.1, "std": float("nan")},
        {"mean": "0.1", "std": 0.3},
        {"mean": True, "std": 0.3},
        {"mean": 0.1},
    ],
    ids=lambda n: repr(n)[:40],
)
def test_row5_normalisation_is_range_checked(saved: Path, normalization: dict) -> None:
    edit_metadata(saved, normalization=normalization)
    with pytest.raises(CheckpointError, match="normalization"):
        load_model(VARIANT, saved)


def test_row5_bad_normalisation_makes_the_cli_fail_without_nan(
    saved: Path, tmp_path: Path, capsys
) -> None:
    edit_metadata(saved, normalization={"mean": float("nan"), "std": 0.3})
    good = tmp_path / "seven.png"
    good.write_bytes(digit_png())
    status, out, err, _ = run_main(
        ["--checkpoints", str(saved), "--model", VARIANT, "--json", str(good)], capsys
    )
    assert status == 1
    records = json_records(out)  # strict JSON: a NaN figure would not parse
    assert records[0]["error"].startswith("Cannot load the model") and "digit" not in records[0]
    assert "Cannot load the model" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("features.block1.conv.weight", 3e38, "beyond"),
        ("head.fc2.weight", -2e4, "beyond"),
        ("features.block1.bn.running_var", -1.0, "negative variance"),
        ("features.block1.bn.running_mean", float("inf"), "NaN or infinite"),
    ],
)
def test_row5_weights_must_be_finite_bounded_and_sane(
    saved: Path, key: str, value: float, match: str
) -> None:
    state = build_model(VARIANT).state_dict()
    state[key].view(-1)[0] = value
    rewrite_weights(saved, state)
    with pytest.raises(CheckpointError, match=match):
        load_model(VARIANT, saved)


def test_row5_weights_of_the_wrong_dtype_are_refused(saved: Path) -> None:
    state = build_model(VARIANT).state_dict()
    state["head.fc2.weight"] = state["head.fc2.weight"].double()
    rewrite_weights(saved, state)
    with pytest.raises(CheckpointError, match="float64"):
        load_model(VARIANT, saved)


ROW7 = [
    ("history", "long", "history"),
    ("history", [{"epoch": "1"}], "history[0].epoch"),
    ("history", [{"epoch": 1, "val_accuracy": "high"}], "history[0].val_accuracy"),
    ("history", [{"loss": 1.0}], "history[0].epoch"),
    ("training", [], "training"),
    ("training", {"seconds": "fast"}, "training.seconds"),
    ("training", {"best_val_accuracy": 1.5}, "training.best_val_accuracy"),
    ("training", {"config": {"seed": "0"}}, "training.config.seed"),
    ("training", {"config": {"augmentation": {"stroke_probs": "x"}}}, "stroke_probs"),
    ("params", "many", "params"),
    ("params", True, "params"),
    ("params", 1.5, "params"),
    ("per_class", {"0": 1}, "per_class"),
    ("per_class", [{"class": 0, "precision": 1, "recall": "x", "f1": 1, "support": 1}], "recall"),
    ("per_class", [{"class": 11, "precision": 1, "recall": 1, "f1": 1, "support": 1}], "class"),
    ("per_class", [{"class": 0}], "per_class[0].precision"),
    ("test_accuracy", "99%", "test_accuracy"),
    ("test_accuracy", 99.6, "test_accuracy"),
    ("test_accuracy", float("nan"), "test_accuracy"),
    ("config", {"channels": "32"}, "config.channels"),
    ("config", [32], "config"),
    ("temperature", "hot", "temperature"),
    ("temperature", -1.0, "temperature"),
    ("test_ece", "low", "test_ece"),
    ("test_ece_scaled", None, "test_ece_scaled"),
    ("test_errors", -3, "test_errors"),
    ("ood", [], "ood"),
    ("ood", {"sets": []}, "ood.sets"),
    ("ood", {"sets": {"noise": {"n": "many"}}}, "ood.sets.noise.n"),
    ("ood", {"sets": {"noise": {"rejection_msp": {"0.95": "x"}}}}, "rejection_msp.0.95"),
    ("ood", {"thresholds": {"msp": {"0.95": None}}}, "ood.thresholds.msp.0.95"),
    ("architecture", [{"layer": 1, "type": "x", "output_shape": [], "params": 0}], "layer"),
    ("rejection", {"default_keep": "most"}, "rejection.default_keep"),
    ("rejection", {"curve": {"keep": [0.9, 0.95], "threshold": [0.5]}}, "rejection.curve"),
    ("rejection", {"curve": {"keep": [], "threshold": []}}, "rejection.curve"),
    ("rejection", {"curve": {"keep": [0.9], "threshold": ["x"]}}, "curve.threshold[0]"),
    ("calibration", {"nll_after": "x"}, "calibration.nll_after"),
    ("selective", {"aurc": "x"}, "selective.aurc"),
    ("sha256", 5, "sha256"),
    ("sha256", "abc", "sha256"),
    ("variant", ["cnn1"], "variant"),
]


@pytest.mark.parametrize(("field", "value", "where"), ROW7, ids=[f"{f}-{w}" for f, _, w in ROW7])
def test_row7_wrongly_typed_metadata_is_a_checkpoint_error(
    saved: Path, field: str, value: Any, where: str
) -> None:
    edit_metadata(saved, **{field: value})
    with pytest.raises(CheckpointError, match="invalid") as raised:
        read_metadata(VARIANT, saved)
    assert where in str(raised.value)
    assert str(raised.value).endswith(".")


def test_row7_complete_and_minimal_metadata_pass_and_render(saved: Path) -> None:
    shipped = read_metadata("cnn3")  # every field the code reads, as written by the scripts
    assert render_model_card(shipped) == (ROOT / "checkpoints" / "cnn3.md").read_text()
    minimal = read_metadata(VARIANT, saved)  # only the required fields
    card = render_model_card(minimal)
    assert "?" in card and "## Per-class results" in card
    edit_metadata(saved, temperature=0.5, ood={"sets": {"noise": {"n": 3}}})
    render_model_card(read_metadata(VARIANT, saved))


def test_row9_checkpoint_files_must_be_regular_and_bounded(saved: Path) -> None:
    weights = weights_path(VARIANT, saved)
    weights.unlink()
    weights.symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        finishes(lambda: load_model(VARIANT, saved))
    weights.unlink()
    weights.mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(VARIANT, saved)
    meta = metadata_path(VARIANT, saved)
    meta.unlink()
    os.mkfifo(meta)
    with pytest.raises(CheckpointError, match="not a regular file"):
        finishes(lambda: load_model(VARIANT, saved))
    meta.unlink()
    with open(meta, "wb") as handle:
        handle.truncate(MAX_METADATA_BYTES + 1)  # sparse: never really written
    with pytest.raises(CheckpointError, match="more than the"):
        load_model(VARIANT, saved)


# =========================================================================== row 6


class NaNModel(torch.nn.Module):
    """A "model" whose every output is NaN, as a damaged checkpoint's can be."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), float("nan"))


def test_row6_nan_predictions_become_per_file_errors(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    real = predict_module.load_model

    def nan_model(variant, directory):
        return NaNModel().eval(), real(variant, directory)[1]

    monkeypatch.setattr(predict_module, "load_model", nan_model)
    files = [tmp_path / "a.png", tmp_path / "b.png"]
    for file in files:
        file.write_bytes(digit_png())
    for json_flag in (["--json"], []):
        status, out, err, _ = run_main(
            ["--checkpoints", str(checkpoint_dir), "--model", VARIANT, *json_flag]
            + [str(f) for f in files],
            capsys,
        )
        assert status == 1 and "Traceback" not in err
        if json_flag:
            records = json_records(out)  # strict JSON: a NaN figure would not parse
            assert [r["file"] for r in records] == [str(f) for f in files]
            assert all("no valid probabilities" in r["error"] for r in records)
            assert not any("confidence" in r for r in records)
        else:
            assert out.count(": error: The model cannot predict") == 2
            assert "predicts" not in out


def test_row6_the_cli_never_prints_a_non_finite_figure(tmp_path: Path, monkeypatch, capsys):
    """Even a Prediction built around make_prediction's guard is printed as an error."""
    broken = Prediction("cnn1", np.full(10, np.nan), 0, math.nan, [(0, math.nan)] * 3, False)

    def fake_files(paths, predictor, threshold, **options):
        for path in paths:
            yield predict_module.FileResult(os.fsdecode(path), {"cnn1": broken})

    monkeypatch.setattr(predict_module, "Predictor", lambda *args, **kwargs: None)
    monkeypatch.setattr(predict_module, "predict_files", fake_files)
    status, out, _, _ = run_main(["--json", "x.png"], capsys)
    assert status == 1 and "no valid probabilities" in json_records(out)[0]["error"]


# =========================================================================== rows 11, 13


def test_row11_special_files_are_refused_without_blocking(
    tmp_path: Path, checkpoint_dir: Path, capsys
) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    device = tmp_path / "zero.png"
    device.symlink_to("/dev/zero")
    good = tmp_path / "seven.png"
    good.write_bytes(digit_png())
    for path, message in ((fifo, "named pipe"), (device, "device"), (tmp_path, "directory")):
        with pytest.raises((InvalidImageError, IsADirectoryError)) as raised:
            finishes(lambda path=path: read_upload(path))
        if isinstance(raised.value, InvalidImageError):
            assert message in str(raised.value)
    args = [str(fifo), str(device), str(tmp_path), str(good)]
    status, out, err, _ = run_main(
        ["--checkpoints", str(checkpoint_dir), "--model", VARIANT, "--json", *args], capsys
    )
    records = json_records(out)
    assert status == 1 and [r["file"] for r in records] == args and "Traceback" not in err
    assert "named pipe" in records[0]["error"] and "device" in records[1]["error"]
    assert "directory" in records[2]["error"] and "digit" in records[3]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a pipe: nobody wrote to or removed it


def test_row13_the_upload_limit_has_a_single_source(tmp_path: Path) -> None:
    import core.preprocess as preprocess_module

    assert MAX_UPLOAD_BYTES == 8 * 2**20
    assert predict_module.MAX_UPLOAD_BYTES is decode_module.MAX_UPLOAD_BYTES
    assert preprocess_module.MAX_UPLOAD_BYTES is decode_module.MAX_UPLOAD_BYTES
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(InvalidImageError, match="limit of 8 MB"):
        read_upload(big)
    with pytest.raises(InvalidImageError, match="limit of 8 MB"):
        preprocess(b"\x89PNG" + b"\x00" * MAX_UPLOAD_BYTES)


# =========================================================================== rows 12, 14, 16, 17


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((1, 2000), np.uint8),
        np.zeros((2000, 1), np.uint8),
        np.full((1, 40_000), 255, np.uint16),
        np.ones((3, 5000, 3), np.float32),
        np.zeros((1, 3000), bool),
        np.zeros((1, 2049, 4), np.int64),
    ],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_row12_long_thin_arrays_are_not_reduced_to_nothing(array: np.ndarray) -> None:
    assert_valid_result(preprocess(array))
    assert_valid_result(preprocess(Image.fromarray(np.zeros(array.shape[:2], np.uint8))))


@pytest.mark.parametrize(
    "build",
    [malformed_mpo, corrupt_exif_jpeg, lambda: bmp_claiming(7000, 7000)],
    ids=["malformed-mpo", "corrupt-exif", "decompression-bomb-warning"],
)
def test_row14_pillow_warnings_never_escape(build) -> None:
    data = build()
    with warnings.catch_warnings(record=True) as unguarded:
        warnings.simplefilter("always")
        with contextlib.suppress(Exception):  # only the warnings matter here
            Image.open(io.BytesIO(data)).load()
    assert unguarded, "the fixture no longer makes Pillow warn"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = preprocess(data)
        except InvalidImageError as error:
            outcome = error
    assert caught == [], [str(w.message) for w in caught]
    assert_documented_or_valid(outcome)


def test_row14_the_cli_prints_no_warning(tmp_path: Path, checkpoint_dir: Path, capsys) -> None:
    files = []
    for name, build in (("mpo.jpg", malformed_mpo), ("exif.jpg", corrupt_exif_jpeg)):
        files.append(tmp_path / name)
        files[-1].write_bytes(build())
    files.append(tmp_path / "bomb.bmp")
    files[-1].write_bytes(bmp_claiming(7000, 7000))
    status, out, err, caught = run_main(
        ["--checkpoints", str(checkpoint_dir), "--model", VARIANT] + [str(f) for f in files],
        capsys,
    )
    assert caught == [] and err == ""
    assert status == 1 and "megapixels" in out.splitlines()[-1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x01\x00" + b"\x00" * 60, "This is an ICO file"),
        (b"<!DOCTYPE html><html></html>", "This is an HTML file"),
        (b"\x00\x00\x00\x1cftypavif" + b"\x00" * 40, "This is an AVIF file"),
        (b"%PDF-1.4\n", "This is a PDF file"),
        (b"II*\x00" + b"\x00" * 40, "This is a TIFF file"),
    ],
)
def test_row16_articles(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        preprocess(data)


def test_row16_damaged_files_of_allowed_formats_are_damaged_not_unsupported() -> None:
    webp = encode(Image.new("RGB", (40, 40), "white"), "WEBP")
    damaged_webp = webp[:30] + b"\x00" * (len(webp) - 30)
    with pytest.raises(InvalidImageError, match="The WebP file is damaged") as raised:
        preprocess(damaged_webp)
    assert "WEBP" not in str(raised.value)
    bmp = encode(Image.new("RGB", (40, 40), "white"), "BMP")
    for damaged in (bmp[:40], bmp[:18] + b"\xff" * 12 + bmp[30:]):
        with pytest.raises(InvalidImageError, match="The BMP file is damaged"):
            preprocess(damaged)
    with pytest.raises(InvalidImageError, match="not a supported image format"):
        preprocess(b"BMW owners' manual, chapter one: starting the engine.")


def test_row17_file_names_starting_with_a_dash(
    tmp_path: Path, checkpoint_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("-x.png").write_bytes(digit_png())
    base = ["--checkpoints", str(checkpoint_dir), "--model", VARIANT, "--json"]
    for args in (["-x.png"], ["--", "-x.png"], ["-x.png", "--threshold", "0"]):
        status, out, err, _ = run_main(base + args, capsys)
        assert status == 0, err
        assert [r["file"] for r in json_records(out)] == ["-x.png"]
    with pytest.raises(SystemExit) as raised:
        predict_module.main([*base, "-y.png"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "'--'" in err and "-y.png" in err
    assert "the following arguments are required" not in err


def test_row17_predict_file_never_raises(tmp_path: Path, checkpoint_dir: Path, monkeypatch):
    """A bug while processing one file is that file's error sentence, not a traceback."""
    good = tmp_path / "seven.png"
    good.write_bytes(digit_png())

    def broken(_data):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(predict_module, "preprocess", broken)
    outcome = predict_file(good, predict_module.Predictor([VARIANT], checkpoint_dir))
    assert outcome.error is not None and outcome.error.endswith(".")
    assert "internal detail" not in outcome.error and not outcome.predictions
