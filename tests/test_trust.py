"""Answers you can trust: calibrated probabilities, one operating point per model, outlier
exposure that is seeded and never teaches a digit as an outlier, deterministic evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from core.checkpoints import DEFAULT_DIRECTORY, read_metadata
from core.data import load_mnist
from core.evaluate import predict_logits, softmax
from core.held_out import SHAPES, draw
from core.inputs import image_to_input
from core.models import VARIANTS
from core.outliers import (
    DIGIT_LIKE_DISTANCE,
    DOODLES,
    FAMILIES,
    MIN_SILHOUETTE_AREA,
    STROKE_LETTERS,
    TRAIN_GLYPHS,
    DigitBank,
    broken_digit,
    build_outlier_pool,
    cut_digit,
    draw_doodle,
    font_glyph,
    font_paths,
    free_strokes,
    is_stick,
    own_ink_share,
    silhouette,
    stroke_letter,
)
from core.predict import Predictor
from core.preprocess import preprocess
from core.selective import DEFAULT_KEEP, threshold_for_keep
from tests.imagefactory import stroke_mask

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEN = 18  # the Draw page's default stroke width


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(VARIANTS, DEFAULT_DIRECTORY)


def drawn(kind: str) -> np.ndarray:
    """A smiley or a 7 as the canvas draws it, preprocessed (28×28 in [0, 1])."""
    if kind == "smiley":
        canvas = draw(SHAPES["smiley"], np.random.default_rng(3), brush=DEFAULT_PEN)
        return preprocess(canvas).image
    return preprocess(1.0 - stroke_mask(7, width=18)).image


@pytest.mark.parametrize("variant", VARIANTS)
def test_probabilities_are_softmax_of_logits_over_the_stored_temperature(
    predictor: Predictor, variant: str
) -> None:
    image = drawn("7")
    model = predictor.models[variant]
    with torch.no_grad():
        logits = model(image_to_input(image, predictor.normalization(variant))).double()[0]
    temperature = predictor.temperature(variant)
    assert 0.05 < temperature < 20 and temperature != 1.0
    prediction = predictor.predict(image, variants=[variant])[variant]
    expected = torch.softmax(logits / temperature, dim=0).numpy()
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-6, atol=1e-12)
    raw = predictor.predict(image, variants=[variant], calibrated=False)[variant]
    np.testing.assert_allclose(raw.probabilities, torch.softmax(logits, 0).numpy(), atol=1e-12)
    assert raw.score == pytest.approx(prediction.confidence)  # rejection uses calibrated scores


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_default_operating_point_keeps_its_share_of_validation_digits(
    variant: str, data_dir: Path
) -> None:
    predictor = Predictor((variant,), DEFAULT_DIRECTORY)
    metadata = predictor.metadata[variant]
    splits = load_mnist(data_dir, seed=int(metadata["training"]["seed"]))
    logits = predict_logits(
        predictor.models[variant], splits.val_images, predictor.normalization(variant)
    )
    confidence = softmax(logits, predictor.temperature(variant)).max(axis=1)
    assert predictor.default_keep(variant) == DEFAULT_KEEP
    for keep in (0.9, 0.95, DEFAULT_KEEP, 0.99):
        threshold = predictor.threshold_for(variant, keep)
        assert (confidence >= threshold).mean() == pytest.approx(keep, abs=0.002)
    assert predictor.threshold_for(variant, 1.0) == 0.0


def test_the_operating_curve_is_monotonic_and_interpolates() -> None:
    curve = read_metadata("cnn3")["rejection"]["curve"]
    thresholds = np.asarray(curve["threshold"])
    assert np.all(np.diff(thresholds) <= 0)  # keeping more digits never raises the threshold
    middle = threshold_for_keep(curve, (curve["keep"][10] + curve["keep"][11]) / 2)
    assert thresholds[11] <= middle <= thresholds[10]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.predict", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_default_rejects_a_drawn_smiley_and_accepts_a_drawn_seven(tmp_path: Path) -> None:
    from PIL import Image

    smiley = tmp_path / "smiley.png"
    draw(SHAPES["smiley"], np.random.default_rng(3), brush=DEFAULT_PEN).save(smiley)
    seven = tmp_path / "seven.png"
    Image.fromarray(np.round(255 * (1.0 - stroke_mask(7, width=18))).astype(np.uint8)).save(seven)
    default = run_cli("--json", str(smiley), str(seven))  # cnn3 at its operating point
    assert default.returncode == 0, default.stderr
    rows = {Path(row["file"]).name: row for row in map(json.loads, default.stdout.splitlines())}
    assert rows["smiley.png"]["rejected"] and rows["smiley.png"]["model"] == "cnn3"
    assert not rows["seven.png"]["rejected"] and rows["seven.png"]["digit"] == 7
    every = run_cli("--json", "--model", "all", str(smiley), str(seven))
    by_file: dict[str, dict[str, dict]] = {}
    for row in map(json.loads, every.stdout.splitlines()):
        by_file.setdefault(Path(row["file"]).name, {})[row["model"]] = row
    assert set(by_file["smiley.png"]) == set(VARIANTS)
    assert by_file["smiley.png"]["cnn2"]["rejected"]
    assert all(row["digit"] == 7 for v, row in by_file["seven.png"].items() if v != "logreg")
    off = run_cli("--json", "--no-reject", str(smiley))
    assert not json.loads(off.stdout.splitlines()[0])["rejected"]


def test_outlier_pool_is_seeded_and_covers_every_family() -> None:
    first = build_outlier_pool(2 * len(FAMILIES), seed=5)
    again = build_outlier_pool(2 * len(FAMILIES), seed=5)
    other = build_outlier_pool(2 * len(FAMILIES), seed=6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.uint8 and first.shape[1:] == (28, 28)
    assert all(image.max() > 0 for image in first)


def test_pool_with_training_digits_draws_every_family_and_no_digit_like_stroke(
    data_dir: Path,
) -> None:
    splits = load_mnist(data_dir)
    digits, labels = splits.train_images.numpy(), splits.train_labels.numpy()
    pool = build_outlier_pool(3 * len(FAMILIES), seed=5, digits=digits, labels=labels)
    np.testing.assert_array_equal(
        pool, build_outlier_pool(3 * len(FAMILIES), seed=5, digits=digits, labels=labels)
    )
    bank = DigitBank(digits)
    for family in ("font_glyphs", "stroke_letters", "free_strokes", "cut_digits"):
        for image in pool[FAMILIES.index(family) :: len(FAMILIES)]:
            assert image.max() == 255
            assert bank.nearest_distance(image) >= DIGIT_LIKE_DISTANCE
    # the check itself: a training digit is at distance 0 from the bank, so it is never kept
    assert bank.nearest_distance(digits[7]) == pytest.approx(0.0, abs=1e-3)


def test_an_overlaid_pair_that_reads_as_one_digit_is_dropped() -> None:
    """A pair as close to a training digit as a typical digit is (here: the pair itself) is never
    an outlier; the same draw against a bank with nothing near it is kept."""
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[0, 4:24, 12:16] = 255  # a "1"
    digits[1, 6:10, 6:22] = 255  # a bar
    labels = np.array([1, 7])
    far = DigitBank(np.zeros((1, 28, 28), np.uint8))
    for seed in range(20):
        pair = broken_digit(np.random.default_rng([2, seed]), digits, labels, far)
        if pair is not None:
            break
    assert pair is not None
    assert (
        broken_digit(np.random.default_rng([2, seed]), digits, labels, DigitBank(pair[None]))
        is None
    )


def test_own_ink_share_is_small_when_one_digit_lies_along_the_other() -> None:
    four = np.zeros((28, 28), np.uint8)
    four[4:24, 16:19] = 255  # the stem
    four[14:17, 8:19] = 255  # the bar
    four[4:15, 8:11] = 255  # the left arm
    one_on_stem = np.zeros((28, 28), np.uint8)
    one_on_stem[6:24, 16:19] = 255
    one_beside = np.roll(one_on_stem, -12, axis=1)
    assert own_ink_share(four, one_on_stem) == pytest.approx(0.0)
    assert own_ink_share(one_on_stem, four) == own_ink_share(four, one_on_stem)
    assert own_ink_share(four, one_beside) > 0.5
    assert own_ink_share(four, np.zeros_like(four)) == 0.0


def test_an_overlaid_pair_where_one_digit_hides_in_the_other_is_dropped() -> None:
    """Two blocks 4-8 pixels apart overlap almost entirely (at most 7 of 20 columns stick out):
    never an outlier, even against a bank with nothing near it; a "1" and a bar are kept."""
    digits = np.zeros((4, 28, 28), np.uint8)
    digits[0, :, 4:24] = 255  # a block as tall as the frame (the shift wraps around)
    digits[1, :, 4:24] = 255  # the same block, labelled otherwise
    digits[2, 4:24, 12:16] = 255  # a "1"
    digits[3, 6:10, 4:24] = 255  # a bar
    far = DigitBank(np.zeros((1, 28, 28), np.uint8))
    same = [
        broken_digit(np.random.default_rng([4, seed]), digits[:2], np.array([1, 7]), far)
        for seed in range(20)
    ]
    assert all(pair is None for pair in same)
    apart = [
        broken_digit(np.random.default_rng([4, seed]), digits[2:], np.array([1, 7]), far)
        for seed in range(20)
    ]
    assert any(pair is not None for pair in apart)


def test_a_cut_digit_falls_apart_into_two_pieces_and_never_repeats_a_bank_digit() -> None:
    """A ring cut in two along a line near its centre is two arcs with a gap between them; the
    same draw against a bank that holds the result is dropped, and so is every cut stick."""
    ring = np.zeros((28, 28), np.uint8)
    rows, cols = np.mgrid[0:28, 0:28]
    radius = np.hypot(rows - 14, cols - 14)
    ring[(radius > 6) & (radius < 9)] = 255
    far = DigitBank(np.zeros((1, 28, 28), np.uint8))
    pieces = []
    for seed in range(10):
        image = cut_digit(np.random.default_rng([5, seed]), ring[None], far)
        np.testing.assert_array_equal(
            image, cut_digit(np.random.default_rng([5, seed]), ring[None], far)
        )
        assert image is not None
        pieces.append(ndimage.label(image > 64)[1])
        twin = DigitBank(image[None])
        assert cut_digit(np.random.default_rng([5, seed]), ring[None], twin) is None
    assert min(pieces) >= 2
    stick = np.zeros((1, 28, 28), np.uint8)
    stick[0, 4:24, 13:16] = 255
    for seed in range(10):
        image = cut_digit(np.random.default_rng([6, seed]), stick, far)
        assert image is None or not is_stick(image)


def test_free_strokes_drop_sticks_and_digits_closer_than_the_cut() -> None:
    """With a bank holding every stroke drawn so far, any repeat is dropped; sticks never pass."""
    kept, dropped = [], 0
    for seed in range(120):
        image = free_strokes(np.random.default_rng([9, seed]), DigitBank(np.zeros((1, 28, 28))))
        if image is None:
            dropped += 1
            continue
        rows, cols = np.flatnonzero(image.max(1) > 50), np.flatnonzero(image.max(0) > 50)
        assert cols[-1] - cols[0] + 1 >= 0.4 * (rows[-1] - rows[0] + 1)
        kept.append(image)
    assert len(kept) > 60 and dropped > 0
    twin = DigitBank(np.stack(kept))
    assert all(free_strokes(np.random.default_rng([9, s]), twin) is None for s in range(120))


def test_letters_drop_whatever_lies_as_close_to_a_training_digit_as_a_real_digit() -> None:
    """Against a bank with nothing near, every drawn letter and glyph is kept (T included);
    against a bank holding each one, the same draw is dropped; without a bank nothing is."""
    far = DigitBank(np.zeros((1, 28, 28), np.uint8))
    fonts = font_paths()
    for seed in range(40):
        for make in (stroke_letter, lambda r, b=None: font_glyph(r, fonts, b)):
            image = make(np.random.default_rng([8, seed]), far)
            assert image is not None and image.max() == 255, seed
            np.testing.assert_array_equal(image, make(np.random.default_rng([8, seed])))
            assert make(np.random.default_rng([8, seed]), DigitBank(image[None])) is None
    assert "T" in STROKE_LETTERS and "T" in TRAIN_GLYPHS


@pytest.mark.parametrize("variant", ["cnn3"])
def test_outliers_are_never_read_as_a_confident_digit(predictor: Predictor, variant: str) -> None:
    """Spot check: no generated outlier is as digit-like as a typical real digit is to the
    shipped model (its calibrated confidence stays below what keeps half of real digits)."""
    pool = build_outlier_pool(300, seed=11)
    assert _confident_digits(predictor, variant, pool) == 0


def _confident_digits(predictor: Predictor, variant: str, pool: np.ndarray) -> int:
    """How many images the model reads as confidently as it reads a typical real digit."""
    confidence = predictor.predict_batch(pool, variant).max(axis=1)
    return int((confidence >= predictor.threshold_for(variant, 0.5)).sum())


@pytest.fixture(scope="module")
def pool_with_digits(data_dir: Path) -> np.ndarray:
    """A spot-check pool built with MNIST's training digits: the families made from them and
    the ones checked against them for digit-likeness."""
    splits = load_mnist(data_dir)
    return build_outlier_pool(
        len(FAMILIES) * 40,
        seed=11,
        digits=splits.train_images.numpy(),
        labels=splits.train_labels.numpy(),
    )


@pytest.mark.parametrize(
    "family", ["font_glyphs", "stroke_letters", "free_strokes", "broken_digits", "cut_digits"]
)
@pytest.mark.parametrize("variant", ["cnn1", "cnn2", "cnn3"])
def test_families_checked_against_training_digits_are_never_read_as_a_confident_digit(
    predictor: Predictor, pool_with_digits: np.ndarray, family: str, variant: str
) -> None:
    images = pool_with_digits[FAMILIES.index(family) :: len(FAMILIES)]
    assert len(images) == 40
    assert _confident_digits(predictor, variant, images) == 0


def test_doodles_draw_every_kind_and_keep_waves_wide() -> None:
    kinds = sorted(DOODLES)
    for kind in kinds:
        rng = np.random.default_rng([3, kinds.index(kind)])
        image = draw_doodle(kind, rng)
        assert image is not None and image.max() == 255, kind
    for seed in range(20):
        rng = np.random.default_rng([4, seed])
        wave = draw_doodle("wave", rng)
        rows, cols = np.flatnonzero(wave.max(1) > 50), np.flatnonzero(wave.max(0) > 50)
        assert cols[-1] - cols[0] > 1.4 * (rows[-1] - rows[0]), seed  # never an upright stroke


def test_silhouettes_are_never_slivers_and_fillers_outgrow_a_digit() -> None:
    images = [silhouette(np.random.default_rng([7, seed])) for seed in range(200)]
    kept = [image for image in images if image is not None]
    assert len(kept) > 150
    tall = 0
    for image in kept:
        solid = image > 0
        width, height = solid.any(0).sum(), solid.any(1).sum()
        assert solid.sum() >= MIN_SILHOUETTE_AREA * 0.8 and min(width, height) >= 5
        tall += max(width, height) >= 24  # beyond MNIST's 20 px box: no digit is that large
    assert tall >= 0.25 * len(kept)
