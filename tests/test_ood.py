"""core.ood: out-of-distribution sets, scores, AUROC and rejection thresholds."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core.ood as ood
from core.ood import (
    OOD_SETS,
    OODDataUnavailableError,
    auroc,
    energy_score,
    load_ood_set,
    msp_score,
    ood_report,
    rejection_rate,
    scribble_stroke_counts,
    thresholds_for_coverage,
)

FASHION_INSTALLED = all((d / "t10k-images-idx3-ubyte.gz").is_file() for d in ood.FASHION_MNIST_DIRS)


def pairwise_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC by brute force over all pairs: 1 if positive wins, 1/2 for a tie."""
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_auroc_hand_worked_example_with_a_tie():
    # Pairs won by the in-distribution scores: 0.9 beats all 3, 0.8 beats all 3, 0.4 beats 0.1
    # and ties 0.4 (1.5) -> 7.5 of 9.
    assert auroc([0.9, 0.8, 0.4], [0.7, 0.4, 0.1]) == pytest.approx(7.5 / 9)


def test_auroc_extremes():
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0
    assert auroc([0, 1, 2], [3, 4, 5]) == 0.0
    assert auroc([1, 1, 1], [1, 1]) == 0.5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
)
def test_auroc_matches_pairwise_definition(pos, neg):
    assert auroc(pos, neg) == pytest.approx(pairwise_auroc(np.array(pos), np.array(neg)))


def test_auroc_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        auroc([np.nan], [1.0])


def test_thresholds_keep_the_requested_fraction():
    scores = np.arange(1, 11) / 10  # 0.1 .. 1.0
    table = thresholds_for_coverage(scores, (0.9, 0.95, 0.99, 0.5))
    assert table[0.9] == pytest.approx(0.2)  # keeps 9 of 10
    assert table[0.95] == pytest.approx(0.1)  # 9.5 rounds up to all 10
    assert table[0.99] == pytest.approx(0.1)
    assert table[0.5] == pytest.approx(0.6)  # keeps 0.6 .. 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=50),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_thresholds_are_the_highest_that_keep_the_coverage(scores, coverage):
    values = np.array(scores, float)
    threshold = thresholds_for_coverage(values, (coverage,))[coverage]
    assert (values >= threshold).mean() >= coverage - 1e-12
    higher = values[values > threshold]
    if len(higher):
        assert (values >= higher.min()).mean() < coverage


def test_rejection_rate_hand_example():
    assert rejection_rate([0.1, 0.5, 0.5, 0.9], 0.5) == 0.25
    assert rejection_rate([0.1, 0.5, 0.5, 0.9], 0.95) == 1.0
    assert rejection_rate([], 0.5) == 0.0


def test_scores_are_higher_for_confident_logits():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    msp, energy = msp_score(logits), energy_score(logits)
    assert msp[0] > msp[1] and energy[0] > energy[1]
    assert msp[1] == pytest.approx(1 / 3)
    assert energy[1] == pytest.approx(1 + np.log(3))
    np.testing.assert_allclose(energy_score(logits + 5.0), energy + 5.0)
    assert energy_score(logits, T=2.0)[1] == pytest.approx(2 * (0.5 + np.log(3)))


def test_energy_does_not_saturate_like_msp():
    logits = np.array([[60.0, 0.0], [80.0, 0.0]])
    assert msp_score(logits)[0] == msp_score(logits)[1] == 1.0
    assert energy_score(logits)[1] > energy_score(logits)[0]


def test_ood_report_structure_and_values():
    rng = np.random.default_rng(0)
    in_logits = rng.normal(size=(200, 10))
    in_logits[:, 0] += 8.0
    out = {"easy": rng.normal(size=(50, 10)), "hard": in_logits[:50].copy()}
    report = ood_report(in_logits, out)
    assert set(report["thresholds"]) == {"msp", "energy"}
    assert list(report["thresholds"]["msp"]) == ["0.99", "0.95", "0.90"]
    assert report["sets"]["easy"]["auroc_msp"] > 0.95
    assert report["sets"]["hard"]["auroc_energy"] == pytest.approx(
        auroc(energy_score(in_logits), energy_score(out["hard"]))
    )
    assert report["sets"]["easy"]["n"] == 50
    rates = report["sets"]["easy"]["rejection_msp"]
    assert rates["0.99"] <= rates["0.95"] <= rates["0.90"]


@pytest.mark.parametrize("name", [n for n in OOD_SETS if n != "fashion_mnist"])
def test_synthetic_sets_are_mnist_format_and_reproducible(name):
    images = load_ood_set(name, n=40, seed=3)
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert not images.flags.writeable
    np.testing.assert_array_equal(images, load_ood_set(name, n=40, seed=3))
    assert not np.array_equal(images, load_ood_set(name, n=40, seed=4))
    assert images.reshape(40, -1).max(axis=1).min() > 0, "no blank images"


@pytest.mark.parametrize("name", ["letters", "scribbles"])
def test_rendered_sets_follow_the_mnist_recipe(name):
    images = load_ood_set(name, n=30).astype(float)
    rows, cols = np.indices((28, 28))
    for image in images:
        mass = image.sum()
        centre = ((rows * image).sum() / mass, (cols * image).sum() / mass)
        assert abs(centre[0] - 14) < 2.5 and abs(centre[1] - 14) < 2.5
        ink_rows, ink_cols = np.nonzero(image > 0)
        extent = max(np.ptp(ink_rows), np.ptp(ink_cols)) + 1
        assert 14 <= extent <= 22, "longer side fitted to about 20 px"
        assert image[0].sum() == image[-1].sum() == 0, "a black margin like MNIST"


def test_scribble_stroke_counts_replay_the_set():
    """The counts come from the very draws of the set: same length, one to three strokes each,
    every count present, and three strokes leave more ink than one (median over the set)."""
    images = load_ood_set("scribbles", n=300, seed=2)
    counts = scribble_stroke_counts(300, seed=2)
    assert counts.shape == (300,) and set(counts.tolist()) == {1, 2, 3}
    np.testing.assert_array_equal(counts, scribble_stroke_counts(300, seed=2))
    assert not np.array_equal(counts, scribble_stroke_counts(300, seed=3))
    ink = (images > 64).reshape(300, -1).sum(1)
    assert np.median(ink[counts == 3]) > 1.3 * np.median(ink[counts == 1])


def test_noise_sets_have_the_documented_distributions():
    uniform = load_ood_set("uniform_noise", n=200).astype(float)
    assert uniform.mean() == pytest.approx(127.5, abs=2)
    gaussian = load_ood_set("gaussian_noise", n=200)
    # N(0.5, 1) clipped to [0, 1]: P(x < 0) = P(x > 1) = Phi(-0.5) ~ 0.3085.
    assert (gaussian == 0).mean() == pytest.approx(0.3085, abs=0.01)
    assert (gaussian == 255).mean() == pytest.approx(0.3085, abs=0.01)


def test_letters_cover_the_alphabet_from_installed_fonts():
    assert ood.font_paths(), "no TrueType font found: install fonts-dejavu-core"
    images = load_ood_set("letters", n=26, seed=0)
    assert len({image.tobytes() for image in images}) == 26


def test_unknown_set_and_bad_n():
    with pytest.raises(ValueError, match="Unknown OOD set 'cats'"):
        load_ood_set("cats")
    with pytest.raises(ValueError, match="positive"):
        load_ood_set("letters", n=0)


@pytest.mark.skipif(not FASHION_INSTALLED, reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_subset():
    images = load_ood_set("fashion_mnist", n=500, seed=0)
    assert images.shape == (500, 28, 28) and images.dtype == np.uint8
    full = ood.load_fashion_mnist_test()
    assert full.shape == (10000, 28, 28)
    assert {image.tobytes() for image in images} <= {image.tobytes() for image in full}
    with pytest.raises(ValueError, match="10000"):
        load_ood_set("fashion_mnist", n=20000)


def _write_idx(path, images: np.ndarray) -> None:
    header = b"".join(int(v).to_bytes(4, "big") for v in (0x0803, *images.shape))
    with gzip.open(path, "wb") as handle:
        handle.write(header + images.tobytes())


def test_fashion_mnist_read_from_data_dir_layout(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", images)
    monkeypatch.setattr(ood, "FASHION_MNIST_DIRS", ())
    np.testing.assert_array_equal(ood.load_fashion_mnist_test(tmp_path), images)


def test_truncated_idx_file_is_a_clear_error(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(b"".join(v.to_bytes(4, "big") for v in (0x0803, 10, 28, 28)) + b"\0" * 99)
    monkeypatch.setattr(ood, "FASHION_MNIST_DIRS", ())
    with pytest.raises(OODDataUnavailableError, match="truncated"):
        ood.load_fashion_mnist_test(tmp_path)


def test_fashion_mnist_unavailable_raises_a_helpful_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*_args, **_kwargs):
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz")

    monkeypatch.setattr(ood, "FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    ood._cached_set.cache_clear()
    try:
        with pytest.raises(OODDataUnavailableError, match="apt-get install dataset-fashion-mnist"):
            load_ood_set("fashion_mnist", n=10, data_dir=tmp_path)
    finally:
        ood._cached_set.cache_clear()
