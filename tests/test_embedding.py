"""Embedding map, neighbours and counterfactuals: the numerics on toy data, the file schema, the
targeted attack on a shipped model, and the Embedding & neighbours page (AppTest) on a small
embedding built here from the shipped checkpoints and the first MNIST digits."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from core.checkpoints import load_model
from core.counterfactual import counterfactual
from core.data import DataUnavailableError, load_mnist, load_mnist_test
from core.embedding import (
    Embedding,
    EmbeddingFileError,
    Pca,
    compute_embedding,
    embedding_path,
    extract,
    fit_pca,
    nearest,
    npz_bytes,
    place,
)
from core.evalfile import read_eval_file
from core.models import build_model
from core.preprocess import preprocess
from core.tsne import tsne
from dashboard import embedding_results, hover_thumbnails, loaders, state

ROOT = Path(__file__).resolve().parent.parent
APP_SCRIPT = ROOT / "dashboard" / "app.py"
PAGE = "views/embedding.py"
SMALL_TEST, SMALL_TRAIN = 300, 600


def drawn_seven() -> np.ndarray:
    """A canvas-like "7", preprocessed into the 28×28 frame the models see."""
    picture = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(picture).line([(70, 50), (200, 50), (120, 240)], fill="black", width=18)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return preprocess(buffer.getvalue()).image.astype(np.float32)


def clusters(per: int = 40, dims: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian clusters and their labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, dims) * 12.0
    x = np.concatenate([c + rng.normal(size=(per, dims)) for c in centres])
    return x, np.repeat(np.arange(3), per)


# ------------------------------------------------------------------------------------ numerics


def test_pca_matches_the_svd_and_projects_one_point_exactly() -> None:
    x, _ = clusters()
    x = x @ np.random.default_rng(1).normal(size=(8, 8))
    pca = fit_pca(x, 3)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:3].T
    got = pca.project(x)
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        pca.variance_ratio, (singular**2 / (singular**2).sum())[:3], rtol=1e-5
    )
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-6)
    np.testing.assert_array_equal(pca.project(x[7]), got[7])  # a single point: the same numbers
    assert (pca.components[np.arange(3), np.abs(pca.components).argmax(axis=1)] > 0).all()


def test_nearest_on_a_toy_bank_orders_by_distance_and_breaks_ties_by_index() -> None:
    bank = np.array([[0, 0], [3, 0], [1, 0], [1, 0], [10, 10]], np.float32)
    index, dist = nearest(bank, np.array([1.2, 0.0]), 3)
    assert index.tolist() == [2, 3, 0]
    np.testing.assert_allclose(dist, [0.2, 0.2, 1.2], atol=1e-6)
    index, dist = nearest(bank, np.array([0.0, 0.0]), 10)  # k larger than the bank
    assert index.tolist() == [0, 2, 3, 1, 4]
    assert dist[-1] == pytest.approx(np.hypot(10, 10))


def test_a_new_point_is_placed_at_the_mean_of_its_nearest_layout_points() -> None:
    bank = np.array([[0.0], [1.0], [2.0], [50.0]])
    layout = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 4.0], [-9.0, -9.0]])
    np.testing.assert_allclose(place(np.array([1.0]), bank, layout, k=3), [2.0, 4.0 / 3.0])


def test_tsne_is_deterministic_and_keeps_clusters_apart() -> None:
    x, labels = clusters()
    options = {"perplexity": 10.0, "iterations": 300, "exaggerated": 100}
    init = fit_pca(x, 2).project(x)
    first, second = tsne(x, init, **options), tsne(x, init, **options)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (len(x), 2) and np.isfinite(first).all()
    d2 = ((first[:, None] - first[None]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    assert (labels[d2.argmin(axis=1)] == labels).mean() == 1.0
    centroids = np.array([first[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(first[labels == c] - centroids[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centroids[a] - centroids[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread


@pytest.mark.parametrize(("variant", "width"), [("logreg", 784), ("mlp", 256), ("cnn2", 192)])
def test_features_are_the_input_of_the_last_linear_layer(variant: str, width: int) -> None:
    torch.manual_seed(0)
    model = build_model(variant).eval()
    norm = {"mean": 0.1307, "std": 0.3081}
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    features, logits = extract(model, images, norm)
    assert features.shape == (5, width) and logits.shape == (5, 10)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    expected = features @ last.weight.detach().numpy().T + last.bias.detach().numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    if variant == "logreg":
        np.testing.assert_allclose(
            features, (images.reshape(5, -1) / 255 - 0.1307) / 0.3081, atol=1e-5
        )
    assert not model._forward_pre_hooks and not last._forward_pre_hooks  # the hook is gone


def toy_embedding() -> Embedding:
    x, labels = clusters(per=10)
    pca = fit_pca(x, 4)
    bank = pca.project(x)
    return Embedding("cnn1", "ab" * 32, pca, bank, labels, labels[::-1].copy(), bank[:, :2],
                     bank[:5], labels[:5], np.arange(5), 0)  # fmt: skip


def test_the_embedding_file_is_byte_for_byte_deterministic_and_round_trips() -> None:
    original = toy_embedding()
    blob = npz_bytes(original.to_arrays())
    assert blob == npz_bytes(original.to_arrays())
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        back = Embedding.from_arrays({key: data[key] for key in data.files})
    assert (back.variant, back.sha256, back.split_seed) == ("cnn1", "ab" * 32, 0)
    np.testing.assert_allclose(back.test_bank, original.test_bank, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(back.test_predictions, original.test_predictions)
    np.testing.assert_array_equal(back.pca.components, original.pca.components)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("tsne", np.zeros((29, 2)), "inconsistent"),
        ("test_bank", np.full((30, 4), np.nan), "NaN"),
        ("train_labels", np.array([0, 1, 2, 3, 12]), "outside 0-9"),
        ("train_index", np.array([0.5] * 5), "wrong type"),
        ("pca_mean", None, "lacks pca_mean"),
    ],
)
def test_a_damaged_embedding_file_is_refused_with_a_reason(name, value, message) -> None:
    arrays = toy_embedding().to_arrays()
    if value is None:
        del arrays[name]
    else:
        arrays[name] = value
    with pytest.raises(EmbeddingFileError, match=message):
        Embedding.from_arrays(arrays)


def test_the_clicked_point_is_read_from_its_custom_data() -> None:
    assert embedding_results.clicked_index({"customdata": [42, 3, 5]}) == 42
    assert embedding_results.clicked_index({"customdata": 7}) == 7
    assert embedding_results.clicked_index({"customdata": {"0": 12, "1": 4, "2": 9}}) == 12
    assert embedding_results.clicked_index({"x": 1.0}) is None
    assert embedding_results.clicked_index(None) is None


def test_the_map_csv_has_one_row_per_digit() -> None:
    xy = np.array([[0.5, -1.25], [2.0, 3.0]], np.float32)
    text = embedding_results.map_csv(xy, np.array([3, 8]), np.array([3, 9])).decode()
    assert text.splitlines() == ["index,x,y,label,predicted", "0,0.5,-1.25,3,3", "1,2.0,3.0,8,9"]


def decode_png(png: bytes) -> np.ndarray:
    """The pixels of a grayscale PNG."""
    with Image.open(io.BytesIO(png)) as picture:
        assert (picture.format, picture.mode) == ("PNG", "L")
        return np.asarray(picture)


def test_the_sprite_tiles_the_digits_row_major_and_its_png_keeps_every_pixel() -> None:
    digits = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    mosaic = hover_thumbnails.sprite(digits, columns=3)
    assert mosaic.shape == (3 * 28, 3 * 28) and mosaic.dtype == np.uint8
    for i, digit in enumerate(digits):
        row, col = divmod(i, 3)
        np.testing.assert_array_equal(
            mosaic[28 * row : 28 * row + 28, 28 * col : 28 * col + 28], digit
        )
    assert not mosaic[56:, 28:].any()  # the short last row is padded with black
    np.testing.assert_array_equal(decode_png(hover_thumbnails.png_bytes(mosaic)), mosaic)
    full = hover_thumbnails.sprite(np.zeros((10_000, 28, 28), np.uint8))
    assert full.shape == (2800, 2800)  # 100 × 100 digits
    with pytest.raises(ValueError):
        hover_thumbnails.sprite(digits.astype(np.float32))


def test_the_sprite_is_refused_for_a_map_of_other_digits(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGIT_LENS_DATA", str(data_dir))
    images, labels = (t.numpy() for t in load_mnist_test(data_dir))
    png = hover_thumbnails.sprite_for(labels[:50])
    assert png is not None
    np.testing.assert_array_equal(decode_png(png), hover_thumbnails.sprite(images))
    assert hover_thumbnails.sprite_for((labels[:50] + 1) % 10) is None
    assert hover_thumbnails.sprite_for(np.zeros(len(labels) + 1, np.int64)) is None


# ------------------------------------------------------------------------------ counterfactual


@pytest.mark.parametrize("target", [1, 3])
def test_the_counterfactual_reaches_the_target_within_its_budget_in_image_range(
    shipped_checkpoints: Path, target: int
) -> None:
    model, metadata = load_model("cnn1", shipped_checkpoints)
    image = drawn_seven()
    found = counterfactual(model, image, target, metadata["normalization"])
    assert found.reached
    assert found.image.min() >= 0.0 and found.image.max() <= 1.0
    assert found.l2 <= found.budget + 1e-4
    assert found.l2 == pytest.approx(float(np.linalg.norm(found.image - image)), abs=1e-5)
    with torch.no_grad():
        norm = metadata["normalization"]
        x = (torch.from_numpy(found.image).view(1, 1, 28, 28) - norm["mean"]) / norm["std"]
        assert int(model(x).argmax()) == target
    assert int(found.probabilities.argmax()) == target
    assert found.probabilities.sum() == pytest.approx(1.0)
    assert not any(p.grad is not None for p in model.parameters())  # weights untouched


# ---------------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def small_checkpoints(
    tmp_path_factory: pytest.TempPathFactory, shipped_checkpoints: Path, data_dir: Path
) -> Path:
    """The shipped checkpoints plus a small cnn3 embedding (the first MNIST test digits and a
    subset of the first training digits), built in seconds."""
    directory = tmp_path_factory.mktemp("checkpoints")
    for path in shipped_checkpoints.iterdir():
        if path.is_file() and not path.name.startswith("embedding_"):
            (directory / path.name).symlink_to(path)
    model, metadata = load_model("cnn3", shipped_checkpoints)
    data = load_mnist(data_dir, seed=int(metadata["training"]["seed"]))
    found = compute_embedding(
        model,
        metadata,
        (data.test_images[:SMALL_TEST].numpy(), data.test_labels[:SMALL_TEST].numpy()),
        (data.train_images[:SMALL_TRAIN].numpy(), data.train_labels[:SMALL_TRAIN].numpy()),
        train_size=200,
        dims=16,
        perplexity=10.0,
        iterations=150,
        exaggerated=50,
    )
    embedding_path("cnn3", directory).write_bytes(npz_bytes(found.to_arrays()))
    return directory


def run_page(directory: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path, page: str = PAGE):
    monkeypatch.setenv(loaders.CHECKPOINTS_ENV_VAR, str(directory))
    monkeypatch.setenv("DIGIT_LENS_DATA", str(data_dir))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=90)
    at.session_state[state.INPUT_KEY] = state.CurrentInput.from_image(
        drawn_seven(), "canvas", "canvas"
    )
    at.switch_page(page)
    return at.run()


def test_the_page_maps_the_digit_lists_neighbours_and_flips_the_answer(
    small_checkpoints: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = run_page(small_checkpoints, monkeypatch, data_dir)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Embedding & neighbours"
    assert [h.value for h in at.header] == ["Nearest neighbours", "What would change the answer"]
    assert at.metric[0].value == "7"
    neighbour_images = [i for i in at.get("image") if len(i.captions) == 8]
    assert len(neighbour_images) == 2  # 8 training and 8 test digits, with pictures
    assert all(" · d=" in c for image in neighbour_images for c in image.captions)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Map coordinates (CSV)", "Neighbours (CSV)"]
    # The shipped cnn3 (2026-12-04) cannot be pushed from this 7 to a 1 within the largest L2
    # budget: the page says so instead of showing a change that does not flip the answer.
    reached = any("makes cnn3 say" in m.value for m in at.markdown)
    refused = [w.value for w in at.warning if "could not be made to say" in w.value]
    assert reached != bool(refused), (reached, refused)
    assert any("property of the **model**" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 2  # the map and the new probabilities
    names = [t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]
    assert names[:10] == [str(d) for d in range(10)] and names[-1] == "current digit"
    assert not any(str(n).startswith("OOD") for n in names)
    # hover thumbnails: the component is mounted on this map with the sprite of the test digits
    (thumbs,) = [
        c for c in at.get("bidi_component")
        if c.proto.component_name == hover_thumbnails.COMPONENT_NAME
    ]  # fmt: skip
    assert not thumbs.proto.isolate_styles  # its JavaScript reaches the chart in the app's DOM
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["meta"] == hover_thumbnails.CHART_META  # how its JavaScript finds it
    assert json.dumps(hover_thumbnails.CHART_META) in thumbs.proto.js_content
    test_images = load_mnist_test(data_dir)[0].numpy()
    np.testing.assert_array_equal(
        decode_png(thumbs.proto.bytes), hover_thumbnails.sprite(test_images)
    )
    assert any("Hover a point to see its digit" in c.value for c in at.caption)

    at.toggle(key="dl.emb.ood").set_value(True)
    at.button_group(key="dl.emb.layout").set_value("t-SNE")
    at.run()
    assert not at.exception and not at.error
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(m.value.startswith("**t-SNE of the features") for m in at.markdown)
    ood = [t for t in spec["data"] if str(t.get("name")).startswith("OOD: ")]
    assert len(ood) == len(read_eval_file("cnn3", small_checkpoints).ood) > 0


def test_the_page_says_plainly_when_mnist_is_absent(
    small_checkpoints: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    def absent(*_args, **_kwargs):
        raise DataUnavailableError("MNIST is not here.")

    monkeypatch.setattr(embedding_results, "load_mnist", absent)
    monkeypatch.setattr(loaders, "load_mnist_test", absent)
    caches = (embedding_results._train_images, loaders._mnist_test, hover_thumbnails._sprite)
    for cache in caches:
        cache.clear()
    try:
        at = run_page(small_checkpoints, monkeypatch, data_dir)
    finally:
        for cache in caches:
            cache.clear()
    assert not at.exception and not at.error
    names = [c.proto.component_name for c in at.get("bidi_component")]
    assert hover_thumbnails.COMPONENT_NAME not in names  # no hover thumbnails; the page says why
    assert any("Hover thumbnails need the MNIST test images" in c.value for c in at.caption)
    assert any("training images are not available" in i.value for i in at.info)
    assert len(at.dataframe) == 2  # labels and distances still shown
    assert set(at.dataframe[0].value.columns) >= {"label", "distance"}


def test_without_an_embedding_file_the_page_says_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, shipped_checkpoints: Path, data_dir: Path, tmp_path: Path
) -> None:
    for path in shipped_checkpoints.iterdir():
        if path.is_file() and not path.name.startswith("embedding_"):
            (tmp_path / path.name).symlink_to(path)
    at = run_page(tmp_path, monkeypatch, data_dir)
    assert not at.exception and not at.error
    assert any("python scripts/embedding.py" in i.value for i in at.info)
    at = run_page(tmp_path, monkeypatch, data_dir, "views/errors.py")
    assert not at.exception and not at.error
    assert any("python scripts/embedding.py" in i.value for i in at.info)


def test_the_error_browser_shows_the_nearest_training_digits_of_a_mistake(
    small_checkpoints: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    at = run_page(small_checkpoints, monkeypatch, data_dir, "views/errors.py")
    assert not at.exception and not at.error
    heading = [s.value for s in at.subheader if s.value.startswith("Nearest training digits")]
    assert heading, [s.value for s in at.subheader]
    assert any("feature space" in c.value for c in at.caption) or any(
        "not among" in i.value for i in at.info
    )


def test_pca_of_a_basis_round_trips_through_the_dataclass() -> None:
    pca = Pca(np.zeros(3, np.float32), np.eye(2, 3, dtype=np.float32), np.array([0.6, 0.4]))
    np.testing.assert_array_equal(pca.project(np.array([[1.0, 2.0, 3.0]])), [[1.0, 2.0]])


def test_an_embedding_of_another_checkpoint_version_is_refused(
    small_checkpoints: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    for path in small_checkpoints.iterdir():
        if not path.name.startswith("embedding_"):
            (tmp_path / path.name).symlink_to(path.resolve())
    with np.load(embedding_path("cnn3", small_checkpoints), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["sha256"] = np.str_("0" * 64)
    embedding_path("cnn3", tmp_path).write_bytes(npz_bytes(arrays))
    at = run_page(tmp_path, monkeypatch, data_dir)
    assert not at.exception and not at.error
    assert any("another version of its checkpoint" in i.value for i in at.info)
