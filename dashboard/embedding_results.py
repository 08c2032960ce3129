"""The Embedding & neighbours page's data: shipped embedding files, read safely and cached; each
digit's place among the others; the counterfactual; the bank's training images; the map figure
and the CSV tables. Also the Error browser's "nearest training digits of a mistake".

Embedding files (``checkpoints/embedding_<variant>.npz``, ``scripts/embedding.py``) are read as
bounded regular files with ``allow_pickle=False`` and validated by
:meth:`core.embedding.Embedding.from_arrays`; one written for another checkpoint is refused.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from torch import nn

from core.checkpoints import read_bounded
from core.counterfactual import Counterfactual, counterfactual
from core.data import DataUnavailableError, load_mnist, resolve_data_dir
from core.embedding import (
    MAX_EMBEDDING_BYTES,
    Embedding,
    EmbeddingFileError,
    embedding_path,
    extract,
    nearest,
    place,
)
from dashboard import hover_thumbnails, images, loaders, shell, state, widgets

RUN_HINT = "Run `python scripts/embedding.py` to compute it."  # shown after every message
MAX_NEIGHBOURS = 24
DIGIT_COLOURS = qualitative.D3


def read_embedding(variant: str, directory: str) -> Embedding:
    """A variant's embedding file, validated; :class:`EmbeddingFileError` when missing or bad."""
    path = embedding_path(variant, directory)
    if not path.exists():
        raise EmbeddingFileError(f"The embedding of {variant} has not been computed.")
    blob = read_bounded(path, MAX_EMBEDDING_BYTES, "Embedding file", EmbeddingFileError, "")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return Embedding.from_arrays(arrays)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise EmbeddingFileError(f"{path.name} is unreadable ({error}).") from error
    except EmbeddingFileError as error:
        raise EmbeddingFileError(f"{path.name} is damaged: {error}.") from error


@st.cache_resource(max_entries=8, show_spinner="Loading the embedding…")
def _embedding(variant: str, directory: str, signature: tuple) -> Embedding:
    found = read_embedding(variant, directory)
    _, metadata = loaders.cached_model(variant, directory, signature)
    if found.variant != variant or found.sha256 != metadata["sha256"]:
        raise EmbeddingFileError(
            f"The embedding file of {variant} was computed for another version of its checkpoint."
        )
    return found


def _directory() -> tuple[str, tuple]:
    directory = loaders.checkpoint_dir()
    return directory, loaders.directory_signature(directory)


def embedding(variant: str) -> Embedding:
    """The shipped embedding of ``variant`` for its loaded checkpoint (shared, read-only)."""
    return _embedding(variant, *_directory())


@dataclass(frozen=True)
class Location:
    """One digit among the others: bank coordinates, place on both maps, calibrated
    probabilities, and its nearest training and test digits (indices, L2 distances)."""

    coords: np.ndarray
    pca: np.ndarray
    tsne: np.ndarray
    probabilities: np.ndarray
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def locate(
    model: nn.Module, metadata: dict, found: Embedding, image: np.ndarray, k: int = MAX_NEIGHBOURS
) -> Location:
    """Place ``image``: one forward pass, its projection (exact on the PCA map), its ``k``
    nearest training and test digits, and the mean t-SNE position of its nearest test digits."""
    features, logits = extract(model, image, metadata["normalization"])
    coords = found.pca.project(features)[0]
    scaled = logits[0].astype(np.float64) / float(metadata.get("temperature", 1.0))
    probabilities = np.exp(scaled - scaled.max())
    return Location(
        coords=coords,
        pca=coords[:2].astype(np.float64),
        tsne=place(coords, found.test_bank, found.tsne, bank_sq=found.test_sq),
        probabilities=probabilities / probabilities.sum(),
        train=nearest(found.train_bank, coords, k, found.train_sq),
        test=nearest(found.test_bank, coords, k, found.test_sq),
    )


@st.cache_data(max_entries=128, show_spinner=False)
def _locate(image: np.ndarray, variant: str, directory: str, signature: tuple) -> Location:
    model, metadata = loaders.cached_model(variant, directory, signature)
    return locate(model, metadata, _embedding(variant, directory, signature), image)


def location(image: np.ndarray, variant: str) -> Location:
    """Where ``image`` lies in ``variant``'s feature space (cached per image)."""
    return _locate(image, variant, *_directory())


@st.cache_data(max_entries=8, show_spinner=False)
def _ood(variant: str, directory: str, signature: tuple) -> dict[str, np.ndarray]:
    model, metadata = loaders.cached_model(variant, directory, signature)
    found = _embedding(variant, directory, signature)
    points = {}
    for name, entry in loaders.cached_eval_file(variant, directory, signature).ood.items():
        coords = found.pca.project(extract(model, entry.examples, metadata["normalization"])[0])
        tsne = [place(c, found.test_bank, found.tsne, bank_sq=found.test_sq) for c in coords]
        points[name] = np.column_stack([coords[:, :2], np.reshape(tsne, (-1, 2))])
    return points


def ood_points(variant: str) -> dict[str, np.ndarray]:
    """Each OOD set's stored examples on the maps: ``[n, 4]`` (PCA x, y, t-SNE x, y)."""
    return _ood(variant, *_directory())


@st.cache_data(max_entries=64, show_spinner="Looking for the smallest change…")
def _counterfactual(
    image: np.ndarray, variant: str, target: int, directory: str, signature: tuple
) -> Counterfactual:
    model, metadata = loaders.cached_model(variant, directory, signature)
    temperature = float(metadata.get("temperature", 1.0))
    return counterfactual(model, image, target, metadata["normalization"], temperature)


def change_to(image: np.ndarray, variant: str, target: int) -> Counterfactual:
    """The smallest change found that makes ``variant`` say ``target`` (cached)."""
    return _counterfactual(image, variant, int(target), *_directory())


@st.cache_resource(max_entries=4, show_spinner="Loading the MNIST training digits…")
def _train_images(data_dir: str, seed: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    splits = load_mnist(data_dir, seed=seed)
    return splits.train_images.numpy()[index], splits.train_labels.numpy()[index]


def train_images(found: Embedding) -> np.ndarray:
    """The bank's training images (uint8); ``DataUnavailableError`` when MNIST is absent or
    is not the data the bank was built from."""
    pictures, labels = _train_images(str(resolve_data_dir()), found.split_seed, found.train_index)
    if not np.array_equal(labels, found.train_labels):
        raise DataUnavailableError("The MNIST training set here differs from the bank's.")
    return pictures


def test_image(index: int) -> np.ndarray | None:
    """MNIST test image ``index`` (uint8), or None when the test set is not available here."""
    try:
        return loaders.mnist_test()[0][index]
    except DataUnavailableError:
        return None


def neighbour_pictures(rows: pd.DataFrame, bank: np.ndarray | None) -> list[np.ndarray] | None:
    """The pictures of one bank's rows of :func:`neighbour_table` (training ones from ``bank``,
    the bank's training images), or None when they are not available here."""
    if rows.empty or (rows["bank"] == "training").all():
        return None if bank is None else [bank[i] for i in rows["position"]]
    pictures = [test_image(int(i)) for i in rows["index"]]
    return None if any(p is None for p in pictures) else pictures


def clicked_index(point: dict | None) -> int | None:
    """The test-digit index of a clicked map point (its first custom datum), if any.

    Plotly sends a WebGL point's custom data row as a typed array, which arrives as
    ``{"0": index, "1": label, "2": predicted}``; a plain list or number works too.
    """
    data = (point or {}).get("customdata")
    if isinstance(data, dict):
        data = data.get("0")
    value = data[0] if isinstance(data, list | tuple) and data else data
    return int(value) if isinstance(value, int | float) and value >= 0 else None


def use_clicked(key: str) -> None:
    """``on_select`` callback: the clicked test digit becomes the current input."""
    index = clicked_index(widgets.selected_point(st.session_state.get(key)))
    if index is None:
        return
    try:
        pictures, labels = loaders.mnist_test()
    except DataUnavailableError:
        st.toast("The MNIST test images are not available here: the digit cannot be shown.")
        return
    state.set_current_input(
        state.CurrentInput.from_image(
            pictures[index], "sample", f"MNIST test image #{index}", int(labels[index]), index
        )
    )


def map_figure(
    xy: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    colour_by_true: bool,
    *,
    current: np.ndarray | None = None,
    ood: dict[str, np.ndarray] | None = None,
    title: str = "",
    height: int = 640,
) -> go.Figure:
    """The 10,000 test digits as WebGL points, one trace per digit (legend toggles it),
    mistakes ringed, OOD examples as grey diamonds, the current digit as a star. Every trace is
    WebGL: Plotly draws WebGL above SVG, so an SVG star would hide behind the points."""
    index = np.arange(len(xy))
    custom = np.column_stack([index, labels, predictions])
    hover = "test #%{customdata[0]}<br>true %{customdata[1]} · predicted %{customdata[2]}"
    colour = labels if colour_by_true else predictions
    point = {"type": "scattergl", "mode": "markers", "hovertemplate": hover + "<extra></extra>"}
    traces = [
        {**point, "x": xy[colour == d, 0], "y": xy[colour == d, 1], "customdata": custom[colour == d],
         "name": str(d), "marker": {"size": 4, "color": DIGIT_COLOURS[d], "opacity": 0.75}}
        for d in range(10)
    ]  # fmt: skip
    wrong = labels != predictions
    traces.append(
        {**point, "x": xy[wrong, 0], "y": xy[wrong, 1], "customdata": custom[wrong],
         "name": f"mistakes ({int(wrong.sum())})",
         "marker": {"size": 9, "symbol": "circle-open", "color": "#111827", "line": {"width": 1}}}
    )  # fmt: skip
    for name, spot in (ood or {}).items():
        traces.append(
            {"type": "scattergl", "mode": "markers", "x": spot[:, 0], "y": spot[:, 1],
             "name": f"OOD: {name}", "hovertemplate": f"{name} example<extra></extra>",
             "marker": {"size": 9, "symbol": "diamond", "color": "#6b7280", "opacity": 0.85}}
        )  # fmt: skip
    if current is not None:
        traces.append(
            {"type": "scattergl", "mode": "markers", "x": [current[0]], "y": [current[1]],
             "name": "current digit", "hovertemplate": "the current digit<extra></extra>",
             "marker": {"size": 22, "symbol": "star", "color": "#facc15",
                        "line": {"width": 2, "color": "#111827"}}}
        )  # fmt: skip
    layout = {
        "title": {"text": title},
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 40, "b": 0},
        "xaxis": {"showticklabels": False, "zeroline": False},
        "yaxis": {"showticklabels": False, "zeroline": False, "scaleanchor": "x"},
        "legend": {"title": {"text": "true digit" if colour_by_true else "predicted"}},
        "clickmode": "event+select",
        "dragmode": "pan",
        "meta": hover_thumbnails.CHART_META,
    }
    return go.Figure(data=traces, layout=layout)


@st.cache_data(max_entries=16, show_spinner=False)
def map_csv(xy: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> bytes:
    """The map's coordinates as CSV: index, x, y, label, predicted."""
    table = pd.DataFrame(
        {"index": np.arange(len(xy)), "x": xy[:, 0].round(4), "y": xy[:, 1].round(4),
         "label": labels, "predicted": predictions}
    )  # fmt: skip
    return table.to_csv(index=False).encode()


def neighbour_table(
    found: Embedding, place_: Location, k: int, exclude: int | None = None
) -> pd.DataFrame:
    """The ``k`` nearest training and test digits (test digit ``exclude``, the input itself,
    left out): bank, rank, MNIST index, label, distance, and ``position`` in the bank."""
    rows = []
    for bank, (index, dist), labels in (
        ("training", place_.train, found.train_labels),
        ("test", place_.test, found.test_labels),
    ):
        keep = [
            (i, d) for i, d in zip(index, dist, strict=True) if bank == "training" or i != exclude
        ]
        for rank, (i, d) in enumerate(keep[:k], start=1):
            mnist = int(found.train_index[i]) if bank == "training" else int(i)
            rows.append({"bank": bank, "rank": rank, "index": mnist, "label": int(labels[i]),
                         "distance": round(float(d), 4), "position": int(i)})  # fmt: skip
    return pd.DataFrame(rows)


def mistake_neighbours(variant: str, index: int, count: int = 8) -> None:
    """The Error browser's block: the ``count`` training digits nearest to test digit ``index``
    in ``variant``'s feature space, with labels (and pictures when MNIST is here)."""
    st.subheader(f"Nearest training digits of test image #{index}")
    try:
        found = embedding(variant)
    except EmbeddingFileError as error:
        st.info(f"{shell.escape_markdown(error)} {RUN_HINT}", icon=":material/scatter_plot:")
        return
    if not 0 <= index < len(found.test_bank):
        st.info(f"Test image #{index} is not among the {len(found.test_bank):,} digits of the map.")
        return
    chosen, dist = nearest(found.train_bank, found.test_bank[index], count, found.train_sq)
    labels = found.train_labels[chosen]
    captions = [f"label {lbl} · d={d:.2f}" for lbl, d in zip(labels, dist, strict=True)]
    try:
        pictures = train_images(found)[chosen]
        st.image([images.to_pixels(p) for p in pictures], caption=captions, width=96)
    except DataUnavailableError:
        st.info("The MNIST training images are not available here: labels and distances only.")
        st.write(", ".join(captions))
    true, said = int(found.test_labels[index]), int(found.test_predictions[index])
    st.caption(
        f"In {variant}'s feature space: {int((labels == true).sum())} of {count} are {true}s "
        f"(the true digit), {int((labels == said).sum())} are {said}s (what it answered). "
        "More on the Embedding & neighbours page."
    )
