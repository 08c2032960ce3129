"""Out-of-distribution inputs and scores: when the model should say "this is not a digit".

Sets (:data:`OOD_SETS`), all uint8 ``[n, 28, 28]`` white on black like MNIST:

- ``fashion_mnist``: Fashion-MNIST test images (Debian ``dataset-fashion-mnist`` in
  ``/usr/share/datasets/fashion-mnist/``, ``<data dir>/FashionMNIST/raw``, else torchvision download).
- ``uniform_noise``: every pixel uniform in 0..255.
- ``gaussian_noise``: every pixel N(0.5, 1) clipped to [0, 1], as in Hendrycks & Gimpel (2017).
- ``letters``: A-Z rendered from installed TrueType fonts (random font, size, weight, slant),
  DejaVu (``fonts-dejavu-core``) where installed so the set is reproducible,
  then put through the MNIST recipe. Some letters (O, I, S, Z, B) look like digits; that is real.
- ``scribbles``: one to three random Bézier strokes of random width, then the MNIST recipe.
- ``drawn_letters``: letters that do not read as digits (no B D G I L O Q S Z), drawn on the
  canvas with a round brush from held-out templates (``core.held_out``).
- ``shapes``: smiley, star, heart, arrow, check mark and #, drawn the same way.

None of these is ever used in training; the outlier pool (``core.outliers``) uses other fonts,
other templates and other generators.

Scores (higher = more in-distribution for both): maximum softmax probability (MSP, Hendrycks &
Gimpel 2017) and the energy score ``T·logsumexp(logits/T)`` (negative free energy, Liu et al.
2020), which does not saturate at 1 the way MSP can. Neither dominates on our models: energy
tends to win on far-OOD input (clothing, noise), MSP on near-OOD input (letters, scribbles).
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.special import logsumexp
from scipy.stats import rankdata

from core.data import resolve_data_dir
from core.evaluate import softmax
from core.held_out import drawn_letter, drawn_shape
from core.preprocess import preprocess
from core.selective import REPORT_COVERAGES, thresholds_for_coverage

OOD_SETS: tuple[str, ...] = (
    "fashion_mnist",
    "uniform_noise",
    "gaussian_noise",
    "letters",
    "scribbles",
    "drawn_letters",
    "shapes",
)
OOD_LABELS: dict[str, str] = {
    "fashion_mnist": "Fashion-MNIST",
    "uniform_noise": "Uniform noise",
    "gaussian_noise": "Gaussian noise",
    "letters": "Letters A–Z",
    "scribbles": "Random scribbles",
    "drawn_letters": "Drawn letters (not digit-like)",
    "shapes": "Drawn shapes and symbols",
}
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_TEST_IMAGES = "t10k-images-idx3-ubyte"
FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".fonts",
)
MAX_FONTS = 64
PREFERRED_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class OODDataUnavailableError(RuntimeError):
    """An out-of-distribution set cannot be built here; the message says how to get it."""


def _read_idx_images(path: Path) -> np.ndarray:
    """uint8 images ``[N, rows, cols]`` from an IDX3 file (gzipped or not)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 16 or int.from_bytes(data[:4], "big") != 0x0803:
        raise OODDataUnavailableError(f"{path} is not an IDX image file.")
    n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    if len(data) != 16 + n * rows * cols:
        raise OODDataUnavailableError(f"{path} is truncated ({len(data)} bytes).")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols).copy()


def load_fashion_mnist_test(data_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The 10,000 Fashion-MNIST test images, uint8 ``[10000, 28, 28]``."""
    directory = resolve_data_dir(data_dir)
    candidates = [directory / "FashionMNIST" / "raw", *FASHION_MNIST_DIRS]
    for folder in candidates:
        for name in (FASHION_TEST_IMAGES, f"{FASHION_TEST_IMAGES}.gz"):
            if (folder / name).is_file():
                return _read_idx_images(folder / name)
    try:
        from torchvision.datasets import FashionMNIST

        return FashionMNIST(root=str(directory), train=False, download=True).data.numpy()
    except (RuntimeError, OSError) as error:
        raise OODDataUnavailableError(
            f"Fashion-MNIST is not installed ({', '.join(str(c) for c in candidates)}) and could "
            f"not be downloaded ({error}). Install it with `apt-get install dataset-fashion-mnist` "
            "or connect to the internet so torchvision can download it."
        ) from error


def _renders_capitals(path: Path) -> bool:
    try:
        box = ImageFont.truetype(str(path), 40).getbbox("A")
    except OSError:
        return False
    return box[2] - box[0] > 4 and box[3] - box[1] > 4


def font_paths() -> list[Path]:
    """Fonts for the letters set: the six of ``fonts-dejavu-core`` where installed, so the set is
    the same on every machine with that package; otherwise any installed TrueType/OpenType fonts
    that render Latin capitals (sorted, at most 64)."""
    found: list[Path] = []
    for folder in FONT_DIRS:
        if folder.is_dir():
            found.extend(p for p in folder.rglob("*") if p.suffix.lower() in {".ttf", ".otf"})
    found = sorted(set(found))
    preferred = sorted(
        (p for p in found if p.name in PREFERRED_FONTS), key=lambda p: PREFERRED_FONTS.index(p.name)
    )
    unique = list({p.name: p for p in preferred}.values())
    if unique:
        return [p for p in unique if _renders_capitals(p)]
    return [p for p in found if _renders_capitals(p)][:MAX_FONTS]


def _letter_fonts() -> list[str | None]:
    paths = font_paths()
    return [str(p) for p in paths] if paths else [None]


def render_letter(
    letter: str, rng: np.random.Generator, fonts: list[str | None] | None = None
) -> np.ndarray:
    """One capital letter drawn white on black at random font/size/stroke/rotation, MNIST format."""
    fonts = fonts or _letter_fonts()
    choice = fonts[int(rng.integers(len(fonts)))]
    size = int(rng.integers(36, 60))
    font = ImageFont.truetype(choice, size) if choice else ImageFont.load_default(size=size)
    canvas = Image.new("L", (96, 96), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 3))
    draw.text(
        (48, 48), letter, fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    shear = float(rng.uniform(-0.3, 0.3))
    canvas = canvas.transform(
        canvas.size,
        Image.Transform.AFFINE,
        (1, shear, -48 * shear, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    return _to_mnist_format(canvas)


def _to_mnist_format(canvas: Image.Image) -> np.ndarray:
    """The dashboard's own MNIST recipe (``core.preprocess``), so OOD inputs look like user input."""
    return np.round(preprocess(canvas).image * 255.0).astype(np.uint8)


def _bezier(points: np.ndarray, steps: int = 48) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 1.0, steps)[:, None]
    p0, p1, p2, p3 = points
    curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return [(float(x), float(y)) for x, y in curve]


def render_scribble(rng: np.random.Generator) -> np.ndarray:
    """One to three random cubic Bézier strokes, white on black, MNIST format."""
    return _scribble(rng)[0]


def _scribble(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """:func:`render_scribble` and how many strokes it drew."""
    canvas = Image.new("L", (112, 112), 0)
    draw = ImageDraw.Draw(canvas)
    strokes = int(rng.integers(1, 4))
    for _ in range(strokes):
        points = rng.uniform(8, 104, size=(4, 2))
        draw.line(_bezier(points), fill=255, width=int(rng.integers(4, 11)), joint="curve")
    return _to_mnist_format(canvas), strokes


def scribble_stroke_counts(n: int = 2000, seed: int = 0) -> np.ndarray:
    """How many strokes each image of ``load_ood_set("scribbles", n, seed)`` has (int ``[n]``):
    one random stroke is often a plausible 1, 7, 2 or 6, three rarely are."""
    rng = np.random.default_rng([seed, OOD_SETS.index("scribbles")])
    return np.array([_scribble(rng)[1] for _ in range(n)])


@functools.lru_cache(maxsize=16)
def _cached_set(name: str, n: int, seed: int, data_dir: str | None) -> np.ndarray:
    rng = np.random.default_rng([seed, OOD_SETS.index(name)])
    if name == "fashion_mnist":
        images = load_fashion_mnist_test(data_dir)
        if n > len(images):
            raise ValueError(f"Fashion-MNIST has {len(images)} test images; asked for {n}.")
        result = images[np.sort(rng.choice(len(images), size=n, replace=False))]
    elif name == "uniform_noise":
        result = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    elif name == "gaussian_noise":
        pixels = np.clip(rng.normal(0.5, 1.0, size=(n, 28, 28)), 0.0, 1.0)
        result = np.round(pixels * 255).astype(np.uint8)
    elif name == "letters":
        fonts = _letter_fonts()
        result = np.stack([render_letter(LETTERS[i % 26], rng, fonts) for i in range(n)])
    elif name == "drawn_letters":
        result = np.stack([drawn_letter(i, rng) for i in range(n)])
    elif name == "shapes":
        result = np.stack([drawn_shape(i, rng) for i in range(n)])
    else:
        result = np.stack([render_scribble(rng) for _ in range(n)])
    result = np.ascontiguousarray(result, dtype=np.uint8).reshape(n, 28, 28)
    result.flags.writeable = False
    return result


def load_ood_set(
    name: str, n: int = 2000, seed: int = 0, data_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """``n`` images of OOD set ``name`` as uint8 ``[n, 28, 28]`` (read-only, cached, reproducible).

    Raises :class:`OODDataUnavailableError` when Fashion-MNIST is neither installed nor
    downloadable, ``ValueError`` for an unknown name or a bad ``n``.
    """
    if name not in OOD_SETS:
        raise ValueError(f"Unknown OOD set {name!r}; choose one of {', '.join(OOD_SETS)}.")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}.")
    return _cached_set(name, int(n), int(seed), str(data_dir) if data_dir else None)


def msp_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Maximum softmax probability of ``logits / temperature`` per row (float64); higher = more
    in-distribution. With the checkpoint's temperature it is the calibrated confidence."""
    return softmax(np.asarray(logits, np.float64), temperature).max(axis=-1)


def energy_score(logits: np.ndarray, T: float = 1.0) -> np.ndarray:
    """Negative free energy ``T·logsumexp(logits/T)`` per row; higher = more in-distribution."""
    return T * logsumexp(np.asarray(logits, np.float64) / T, axis=-1)


SCORES = {"msp": msp_score, "energy": energy_score}
SCORE_LABELS = {"msp": "Max softmax probability", "energy": "Energy (logsumexp)"}


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve separating in- (positive) from out-of-distribution scores.

    The Mann-Whitney statistic: the probability that a random in-distribution sample scores higher
    than a random OOD one, ties counting one half (average ranks).
    """
    positive = np.asarray(in_scores, np.float64).ravel()
    negative = np.asarray(out_scores, np.float64).ravel()
    if not len(positive) or not len(negative):
        raise ValueError("AUROC needs at least one in- and one out-of-distribution score.")
    if np.isnan(positive).any() or np.isnan(negative).any():
        raise ValueError("Scores hold NaN.")
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rejection_rate(out_scores: np.ndarray, threshold: float) -> float:
    """Fraction of scores below ``threshold``, i.e. rejected by the rule ``accept if score >= t``."""
    scores = np.asarray(out_scores, np.float64).ravel()
    return float((scores < threshold).mean()) if len(scores) else 0.0


@dataclass(frozen=True)
class SetScores:
    """One OOD set scored against the in-distribution set: per score key of :data:`SCORES` the
    per-image ``scores`` and the ``auroc``, and each image's predicted digit."""

    scores: dict[str, np.ndarray]
    auroc: dict[str, float]
    prediction: np.ndarray


def set_scores(logits: np.ndarray, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """Every score of :data:`SCORES` for ``logits``; MSP at ``temperature`` (calibrated)."""
    logits = np.asarray(logits, np.float64)
    return {"msp": msp_score(logits, temperature), "energy": energy_score(logits)}


def score_sets(
    in_logits: np.ndarray, ood_logits: Mapping[str, np.ndarray], temperature: float = 1.0
) -> dict[str, SetScores]:
    """Every score of every OOD set and its AUROC against ``in_logits`` (the MNIST test set).

    The one place these figures are computed: the precompute writes them into the metadata and
    the dashboard recomputes them from the stored logits with this same function. MSP is taken
    at ``temperature`` (the checkpoint's, so it is the calibrated confidence users see).
    """
    in_scores = set_scores(in_logits, temperature)
    result = {}
    for name, logits in ood_logits.items():
        logits = np.asarray(logits, np.float64)
        scores = set_scores(logits, temperature)
        result[name] = SetScores(
            scores=scores,
            auroc={key: auroc(in_scores[key], scores[key]) for key in SCORES},
            prediction=logits.argmax(axis=1),
        )
    return result


def ood_report(
    in_logits: np.ndarray,
    ood_logits: dict[str, np.ndarray],
    coverages: tuple[float, ...] = REPORT_COVERAGES,
    temperature: float = 1.0,
) -> dict:
    """JSON-ready summary: per score the thresholds on the in-distribution set, and per set and
    score the AUROC and the rejection rate at each threshold (coverage keys as strings)."""
    report: dict = {"coverages": list(coverages), "thresholds": {}, "sets": {}}
    thresholds = {
        key: thresholds_for_coverage(scores, coverages)
        for key, scores in set_scores(in_logits, temperature).items()
    }
    for key, table in thresholds.items():
        report["thresholds"][key] = {f"{c:.2f}": t for c, t in table.items()}
    for name, scored in score_sets(in_logits, ood_logits, temperature).items():
        entry: dict = {"n": len(scored.prediction)}
        for key in SCORES:
            entry[f"auroc_{key}"] = scored.auroc[key]
            entry[f"rejection_{key}"] = {
                f"{c:.2f}": rejection_rate(scored.scores[key], t)
                for c, t in thresholds[key].items()
            }
        report["sets"][name] = entry
    return report
