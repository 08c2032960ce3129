"""Seeded mutation fuzzing of ``preprocess`` and the ``core.predict`` CLI (issue 11).

Valid PNG, JPEG, GIF, BMP, WebP and MPO files of many modes are damaged by byte and bit flips,
truncation, insertions, chunk and segment duplication and header-field changes (sizes, bit depths,
colour types, frame types, component counts), with PNG CRCs fixed half of the time so damage
reaches the decoders; random arrays of odd shapes, dtypes and values go in beside them. Every
input must give :class:`InvalidImageError` (a sentence) or a finite result in [0, 1], within
:data:`CPU_LIMIT_S` of CPU and :data:`MEMORY_LIMIT` of extra peak memory. The CLI gets some of the
files in-process (``main([... "--json", ...])``) and once as a real subprocess.

``random.Random(SEED)`` makes every run try the same inputs; the figures (inputs tried, slowest
input, peak memory) are printed at the end of each fuzz test.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import core.predict as predict_module
from core.checkpoints import save_checkpoint
from core.decode import InvalidImageError
from core.inputs import MNIST_NORMALIZATION
from core.models import build_model
from core.preprocess import PreprocessResult, preprocess
from tests.imagefactory import encode, stroke_mask

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
BYTE_INPUTS = 4000
ARRAY_INPUTS = 1000
CPU_LIMIT_S = 2.0
MEMORY_LIMIT = 500 * 2**20
VARIANT = "cnn1"


# --------------------------------------------------------------------------- seed files


def _ink(size: tuple[int, int] = (48, 48)) -> np.ndarray:
    width, height = size
    box = (width * 0.25, height * 0.12, width * 0.75, height * 0.88)
    return stroke_mask(7, size=size, box=box, width=max(2, width // 10), supersample=1)


def seed_files() -> dict[str, bytes]:
    """Valid files of every allowed format in many modes, a few kilobytes each."""
    ink = _ink()
    gray = Image.fromarray(np.rint((1 - ink) * 255).astype(np.uint8), "L")
    rgb = gray.convert("RGB")
    alpha = Image.fromarray(np.rint(ink * 255).astype(np.uint8), "L")
    rgba = Image.merge("RGBA", (*Image.new("RGB", gray.size, (20, 30, 200)).split(), alpha))
    palette = gray.convert("P")
    bits = gray.point(lambda v: 255 if v > 128 else 0).convert("1")
    sixteen = Image.fromarray(np.rint((1 - ink) * 65535).astype(np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {
        "png-L": encode(gray, "PNG"),
        "png-RGB": encode(rgb, "PNG"),
        "png-RGBA": encode(rgba, "PNG"),
        "png-P-trns": encode(palette, "PNG", transparency=b"\xff" * 255 + b"\x00"),
        "png-1": encode(bits, "PNG"),
        "png-I16": encode(sixteen, "PNG"),
        "png-exif": encode(rgb, "PNG", exif=exif.tobytes()),
        "jpeg-L": encode(gray, "JPEG", quality=90),
        "jpeg-RGB": encode(rgb, "JPEG", quality=90),
        "jpeg-progressive": encode(rgb, "JPEG", progressive=True, quality=90),
        "jpeg-CMYK": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg-exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        "mpo": encode(rgb, "MPO", save_all=True, append_images=[gray.convert("RGB")]),
        "gif": encode(gray, "GIF"),
        "gif-trns": encode(palette, "GIF", transparency=255),
        "gif-animated": encode(gray, "GIF", save_all=True, append_images=[rgb], duration=50),
        "bmp-RGB": encode(rgb, "BMP"),
        "bmp-1": encode(bits, "BMP"),
        "bmp-P": encode(palette, "BMP"),
        "bmp-rle8": bmp_rle8(np.asarray(gray)),
        "webp-lossy": encode(rgb, "WEBP", quality=80),
        "webp-lossless-RGBA": encode(rgba, "WEBP", lossless=True),
    }
    return files


def bmp_rle8(pixels: np.ndarray) -> bytes:
    """An 8-bit RLE BMP (Pillow reads RLE but cannot write it): one run per pixel pair."""
    height, width = pixels.shape
    runs = bytearray()
    for row in pixels[::-1]:
        for value in row:
            runs += bytes((1, int(value)))
        runs += b"\x00\x00"
    runs += b"\x00\x01"
    palette = b"".join(bytes((v, v, v, 0)) for v in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(runs), 0, 0, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + info + palette + runs


# --------------------------------------------------------------------------- mutations


def png_chunks(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each whole chunk of a PNG."""
    chunks, position = [], 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        end = position + 12 + length
        if end > len(data):
            break
        chunks.append((position, end))
        position = end
    return chunks


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so the damage inside reaches the decoder."""
    out = bytearray(data)
    for start, end in png_chunks(data):
        crc = zlib.crc32(bytes(out[start + 4 : end - 4]))
        out[end - 4 : end] = struct.pack(">I", crc)
    return bytes(out)


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each length-prefixed segment before the first scan of a JPEG."""
    segments, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segments.append((position, position + 2 + length))
        if marker == 0xDA:
            break
        position += 2 + length
    return segments


EXTREMES = [0, 1, 2, 255, 256, 4095, 16383, 16384, 32767, 65535, 2**24 - 1, 2**31 - 1, 2**32 - 1]


def change_header(data: bytes, rng: random.Random) -> bytes:
    """Set a size, depth, type or count field of the header to an extreme or random value."""
    out = bytearray(data)
    value = rng.choice(EXTREMES) if rng.random() < 0.7 else rng.randrange(2**32)
    if data.startswith(b"\x89PNG"):
        field = rng.choice([(16, 4), (20, 4), (24, 1), (25, 1), (26, 1), (27, 1), (28, 1)])
    elif data.startswith(b"\xff\xd8"):
        sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        if sof < 0 or rng.random() < 0.2:
            segments = jpeg_segments(data)
            start = rng.choice(segments)[0] if segments else 2
            field = (start + 1, 1)  # the marker itself: another segment type
        else:
            field = rng.choice(
                [(sof + 1, 1), (sof + 4, 1), (sof + 5, 2), (sof + 7, 2), (sof + 9, 1)]
            )
            field = field if rng.random() < 0.8 else (sof + 11, 1)  # a sampling factor
    elif data.startswith(b"GIF"):
        descriptor = data.find(b"\x2c", 13)
        candidates = [(6, 2), (8, 2), (10, 1)]
        if descriptor > 0:
            candidates += [(descriptor + 1 + i, 2) for i in range(0, 8, 2)]
        field = rng.choice(candidates)
    elif data.startswith(b"BM"):
        field = rng.choice([(10, 4), (14, 4), (18, 4), (22, 4), (28, 2), (30, 4), (46, 4)])
    else:  # WebP: RIFF size, chunk size, VP8X canvas, VP8/VP8L dimensions
        field = rng.choice([(4, 4), (16, 4), (24, 3), (27, 3), (26, 2), (28, 2), (21, 4)])
    position, size = field
    if position + size <= len(out):
        order = "little" if not data.startswith((b"\x89PNG", b"\xff\xd8")) else "big"
        out[position : position + size] = (value % 2 ** (8 * size)).to_bytes(size, order)
    return bytes(out)


def duplicate_structure(data: bytes, rng: random.Random) -> bytes:
    """Repeat a chunk (PNG), a segment (JPEG) or a slice (others) once or many times."""
    if data.startswith(b"\x89PNG"):
        spans = png_chunks(data)
    elif data.startswith(b"\xff\xd8"):
        spans = jpeg_segments(data)
    else:
        start = rng.randrange(len(data))
        spans = [(start, min(len(data), start + rng.randrange(1, 64)))]
    if not spans:
        return data
    start, end = rng.choice(spans)
    times = rng.choice([2, 3, 10, 1000, 20_000])
    piece = data[start:end] * times
    return data[:end] + piece[: 4 * 2**20] + data[end:]


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three random mutations of ``data`` and their names."""
    names = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.choice(["flip", "bits", "truncate", "insert", "duplicate", "header", "header"])
        names.append(kind)
        if kind == "flip":
            out = bytearray(data)
            for _ in range(rng.randrange(1, 9)):
                out[rng.randrange(len(out))] = rng.randrange(256)
            data = bytes(out)
        elif kind == "bits":
            out = bytearray(data)
            for _ in range(rng.randrange(1, 17)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
            data = bytes(out)
        elif kind == "truncate":
            data = data[: rng.randrange(1, len(data))]
        elif kind == "insert":
            position = rng.randrange(len(data))
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            data = data[:position] + junk + data[position:]
        elif kind == "duplicate":
            data = duplicate_structure(data, rng)
        else:
            data = change_header(data, rng)
        if len(data) < 2:
            data = data + b"\x00\x00"
    if data.startswith(b"\x89PNG") and rng.random() < 0.5:
        data = fix_png_crcs(data)
        names.append("crc")
    return data, "+".join(names)


# --------------------------------------------------------------------------- arrays

DTYPES = [
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.longdouble,
    bool,
    np.complex64,
    np.dtype(">u2"),
    np.dtype(">f4"),
]


def random_array(rng: random.Random) -> np.ndarray:
    """An array of an odd shape, dtype and value pattern (some invalid on purpose)."""
    generator = np.random.default_rng(rng.randrange(2**32))
    shape = rng.choice(
        [
            (rng.randrange(1, 4), rng.randrange(1, 4)),
            (1, rng.randrange(1, 5000)),
            (rng.randrange(1, 5000), 1),
            (rng.randrange(1, 300), rng.randrange(1, 300)),
            (rng.randrange(1, 200), rng.randrange(1, 200), rng.randrange(1, 6)),
            (rng.randrange(1, 3), rng.randrange(1000, 3000), rng.choice([1, 3, 4])),
            (0, rng.randrange(5)),
            (2, 2, 2, 2),
            (rng.randrange(1, 50),),
        ]
    )
    dtype = np.dtype(rng.choice(DTYPES))
    pattern = rng.choice(["noise", "constant", "extreme", "digit", "nonfinite"])
    if pattern == "digit" and len(shape) >= 2 and min(shape[:2]) >= 8:
        values = _ink((shape[1], shape[0]))
        if len(shape) == 3:
            values = np.repeat(values[:, :, None], shape[2], axis=2)
        values = values * (255 if dtype.kind in "iub" else 1)
    elif pattern == "constant":
        values = np.full(shape, rng.choice([0, 1, 255, 65535, -1, 0.5, 1e30]))
    elif pattern == "extreme":
        values = generator.choice([-1e308, -1.0, 0.0, 1.0, 1e308, 2**63], size=shape)
    else:
        values = generator.normal(0, rng.choice([1, 100, 1e6]), size=shape)
        if pattern == "nonfinite" and values.size:
            values.flat[generator.integers(values.size, size=max(1, values.size // 10))] = (
                rng.choice([np.nan, np.inf, -np.inf])
            )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = np.nan_to_num(np.asarray(values, np.float64), nan=0.0)
            values = np.clip(values, float(info.min), float(info.max))
        return np.asarray(values).astype(dtype)


# --------------------------------------------------------------------------- checking


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class Tally:
    """Inputs tried, the slowest one and the largest peak, for the printed summary."""

    def __init__(self) -> None:
        self.tried = 0
        self.slowest = (0.0, "")
        self.peak = (0, "")
        self.errors = 0
        self.failures: list[str] = []

    def summary(self, what: str) -> str:
        return (
            f"\nfuzz {what}: {self.tried} inputs tried ({self.errors} documented errors, "
            f"{self.tried - self.errors} valid results); slowest {self.slowest[0]:.3f} s CPU "
            f"({self.slowest[1]}); peak extra memory {self.peak[0] / 2**20:.0f} MB "
            f"({self.peak[1]})"
        )


def check(tally: Tally, name: str, source: Any) -> None:
    """Preprocess ``source``: a sentence-long InvalidImageError or a valid result, in bounds."""
    by_rss = _reset_peak()
    before = _status_kib("VmRSS") or 0 if by_rss else 0
    start = time.process_time()
    try:
        outcome: Any = preprocess(source)
    except InvalidImageError as error:
        outcome = error
    except Exception as error:  # recorded as a failure below, with the input's name
        outcome = error
    cpu = time.process_time() - start
    peak = ((_status_kib("VmHWM") or 0) - before) * 1024 if by_rss else 0
    tally.tried += 1
    tally.slowest = max(tally.slowest, (cpu, name))
    tally.peak = max(tally.peak, (peak, name))
    if isinstance(outcome, InvalidImageError):
        tally.errors += 1
        if not str(outcome).endswith(".") or "Traceback" in str(outcome):
            tally.failures.append(f"{name}: message {outcome!s:.80}")
    elif isinstance(outcome, Exception):
        tally.failures.append(f"{name}: {type(outcome).__name__}: {outcome!s:.120}")
    elif not (
        isinstance(outcome, PreprocessResult)
        and outcome.image.shape == (28, 28)
        and np.isfinite(outcome.image).all()
        and outcome.image.min() >= 0.0
        and outcome.image.max() <= 1.0
        and torch.isfinite(outcome.tensor).all()
    ):
        tally.failures.append(f"{name}: invalid result")
    if cpu > CPU_LIMIT_S:
        tally.failures.append(f"{name}: {cpu:.2f} s of CPU")
    if peak > MEMORY_LIMIT:
        tally.failures.append(f"{name}: {peak / 2**20:.0f} MB")


def mutated_inputs(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    seeds = seed_files()
    names = sorted(seeds)
    inputs = []
    for index in range(count):
        base = names[index % len(names)]
        data, how = mutate(seeds[base], rng)
        inputs.append((f"{base}#{index}:{how}", data))
    return inputs


# --------------------------------------------------------------------------- tests


def test_seed_files_are_valid() -> None:
    for name, data in seed_files().items():
        result = preprocess(data)
        assert not result.blank, name


def test_fuzz_preprocess_with_mutated_files(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, data in mutated_inputs(BYTE_INPUTS, SEED):
            check(tally, name, data)
    with capsys.disabled():
        print(tally.summary("mutated files"))
    assert not tally.failures, tally.failures[:20]
    assert not caught, [str(w.message) for w in caught[:5]]  # Pillow's warnings never escape
    assert tally.tried == BYTE_INPUTS and 0 < tally.errors < tally.tried


def test_fuzz_preprocess_with_random_arrays(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(SEED + 1)
    tally = Tally()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(ARRAY_INPUTS):
            array = random_array(rng)
            check(tally, f"array#{index}:{array.dtype}{array.shape}", array)
    with capsys.disabled():
        print(tally.summary("random arrays"))
    assert not tally.failures, tally.failures[:20]
    assert not caught, [str(w.message) for w in caught[:5]]
    assert tally.tried == ARRAY_INPUTS and 0 < tally.errors < tally.tried


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    metadata = {
        "params": 0,
        "normalization": dict(MNIST_NORMALIZATION),
        "test_accuracy": 0.5,
        "per_class": [],
        "history": [],
        "training": {"seed": 0},
    }
    save_checkpoint(build_model(VARIANT), VARIANT, metadata, directory)
    return directory


def write_files(directory: Path, inputs: list[tuple[str, bytes]]) -> list[str]:
    paths = []
    for index, (_, data) in enumerate(inputs):
        path = directory / f"input-{index:03d}.img"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def check_records(stdout: str, files: list[str]) -> None:
    """One strict-JSON record per file, in order: an error sentence or a finite prediction."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the CLI's output")

    records = [json.loads(line, parse_constant=refuse) for line in stdout.splitlines()]
    assert [r["file"] for r in records] == files
    for record in records:
        if "error" in record:
            assert isinstance(record["error"], str) and record["error"].endswith("."), record
            continue
        assert record["model"] == VARIANT and 0 <= record["digit"] <= 9
        assert math.isfinite(record["confidence"]) and 0.0 <= record["confidence"] <= 1.0
        assert all(0.0 <= p <= 1.0 for _, p in record["top3"])


def test_fuzz_cli_in_process(checkpoint_dir: Path, tmp_path: Path, capsys) -> None:
    inputs = mutated_inputs(120, SEED + 2)
    files = write_files(tmp_path, inputs)
    for start in range(0, len(files), 40):
        batch = files[start : start + 40]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = predict_module.main(
                ["--checkpoints", str(checkpoint_dir), "--model", VARIANT, "--json", *batch]
            )
        out, err = capsys.readouterr()
        assert status in (0, 1) and err == "" and not caught
        check_records(out, batch)


def test_fuzz_cli_subprocess(checkpoint_dir: Path, tmp_path: Path) -> None:
    """A real ``python -m core.predict`` run: no traceback or warning, no hang, every file."""
    inputs = mutated_inputs(30, SEED + 3)
    files = write_files(tmp_path, inputs)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    dash = tmp_path / "-dash.png"
    dash.write_bytes(seed_files()["png-L"])
    files = [files[0], str(fifo), *files[1:], str(dash)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.predict",
            *("--checkpoints", str(checkpoint_dir), "--model", VARIANT, "--json"),
            *files,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1) and done.stderr == "", done.stderr[-2000:]
    check_records(done.stdout, files)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert "named pipe" in records[1]["error"] and "digit" in records[-1]
