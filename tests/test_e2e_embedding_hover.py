"""End to end in a real Chromium: hovering a point of the Embedding & neighbours map shows that
test digit's thumbnail (its index, label and prediction, and exactly its 28×28 pixels, read back
from the thumbnail's canvas); the thumbnail follows the map across a click (which makes the digit
current and re-renders the chart) and a switch to the t-SNE layout (a new chart), and leaves
with the page.

Needs Debian's ``chromium``, the Python ``playwright`` package, the full MNIST test set and the
shipped ``cnn3`` embedding; skips with a reason otherwise. The screenshot goes to
``test-artifacts/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from core.checkpoints import DEFAULT_DIRECTORY
from core.data import load_mnist_test
from core.embedding import Embedding, embedding_path
from dashboard.embedding_results import read_embedding
from dashboard.hover_thumbnails import CHART_META
from tests.conftest import find_data_dir

pytestmark = pytest.mark.e2e

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python playwright package is not installed"
)
if not Path("/usr/bin/chromium").exists():
    pytest.skip(
        "/usr/bin/chromium not found: install Debian's browser with `apt-get install -y chromium`",
        allow_module_level=True,
    )

from tests.test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, dashboard_server, wait_idle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHECKPOINTS = Path(os.environ.get("DIGIT_LENS_CHECKPOINTS") or DEFAULT_DIRECTORY)
VARIANT = "cnn3"
STEP_MS = 60_000
DATA_DIR = find_data_dir()
if DATA_DIR is None:
    pytest.skip(
        "full MNIST not present (set DIGIT_LENS_DATA or provide ../shared/data): "
        "the hover thumbnails are drawn from the MNIST test images",
        allow_module_level=True,
    )
if not embedding_path(VARIANT, CHECKPOINTS).exists():
    pytest.skip(
        f"no {VARIANT} embedding in {CHECKPOINTS}: run `python scripts/embedding.py`",
        allow_module_level=True,
    )

# The page coordinates of a point of the map, from Plotly's own axes (data → pixels).
POINT_JS = """([meta, x, y]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
    .find((g) => g.layout && g.layout.meta === meta && g.isConnected);
  if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) return null;
  const box = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}"""
# The thumbnail canvas's 28×28 pixels (red channel: the sprite is grayscale).
PIXELS_JS = """() => {
  const canvas = document.querySelector('[data-testid="dlHoverThumbnail"] canvas');
  const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  return {width: canvas.width, height: canvas.height, shown: canvas.getBoundingClientRect().width,
          red: Array.from(rgba.filter((_, i) => i % 4 === 0)),
          grey: rgba.every((v, i) => i % 4 === 3 ? v === 255 : v === rgba[i - (i % 4)])};
}"""
READY = '[data-testid="stBidiComponentRegular"][data-sprite="ready"][data-attached="true"]'
THUMB = '[data-testid="dlHoverThumbnail"]'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard with MNIST; yields its URL once healthy."""
    env = {**os.environ, "DIGIT_LENS_DATA": str(DATA_DIR)}
    with dashboard_server(tmp_path_factory.mktemp("streamlit"), env) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str):
    """One Chromium page on the embedding page of ``cnn3``."""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1440, "height": 1000})
        tab.set_default_timeout(STEP_MS)
        tab.goto(f"{server}/embedding?model={VARIANT}")
        yield tab
        browser.close()


@pytest.fixture(scope="module")
def found() -> Embedding:
    return read_embedding(VARIANT, str(CHECKPOINTS))


@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_mnist_test(DATA_DIR)
    return images.numpy(), labels.numpy()


def isolated_points(xy: np.ndarray, count: int) -> list[int]:
    """``count`` test digits far from every other point (so the hover picks them alone), away
    from the map's edges (the axes' scales are equal: data distance is screen distance)."""
    low, high = np.percentile(xy, [10, 90], axis=0)
    inside = np.flatnonzero(((xy > low) & (xy < high)).all(axis=1))
    gap = cKDTree(xy).query(xy[inside], k=2)[0][:, 1]
    return [int(i) for i in inside[np.argsort(-gap, kind="stable")[:count]]]


def hover(page, xy: tuple[float, float]) -> tuple[float, float]:
    """Move the mouse onto data point ``xy`` of the map, from a little way off; its page position."""
    spot = page.evaluate(POINT_JS, [CHART_META, float(xy[0]), float(xy[1])])
    assert spot is not None, "the map's Plotly graph div was not found"
    page.mouse.move(spot[0] - 40, spot[1] + 40)
    page.mouse.move(spot[0], spot[1], steps=8)
    return spot[0], spot[1]


def expect_thumbnail(page, index: int, found: Embedding, mnist_test) -> None:
    """The thumbnail is visible and shows test digit ``index``: caption and exact pixels."""
    thumb = page.locator(THUMB)
    playwright_api.expect(thumb).to_have_count(1)  # one thumbnail, even after re-renders
    playwright_api.expect(thumb).to_be_visible()
    playwright_api.expect(thumb).to_have_attribute("data-index", str(index))
    playwright_api.expect(thumb).to_have_attribute("data-drawn", str(index))
    label, said = int(found.test_labels[index]), int(found.test_predictions[index])
    assert label == int(mnist_test[1][index])
    text = thumb.inner_text()
    assert f"test #{index}" in text and f"true {label} · predicted {said}" in text, text
    shown = page.evaluate(PIXELS_JS)
    assert (shown["width"], shown["height"]) == (28, 28) and shown["grey"]
    assert shown["shown"] == pytest.approx(84, abs=0.5)  # enlarged three times
    drawn = np.array(shown["red"], np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(drawn, mnist_test[0][index])


def test_hovering_a_point_shows_its_digit(page, found: Embedding, mnist_test) -> None:
    page.locator("h1").filter(has_text="Embedding & neighbours").wait_for()
    wait_idle(page)
    page.locator(READY).wait_for(state="attached")
    assert page.locator('[data-testid="stException"]').count() == 0
    first, second = isolated_points(found.test_bank[:, :2], 2)

    spot = hover(page, found.test_bank[first, :2])
    expect_thumbnail(page, first, found, mnist_test)
    box = page.locator(THUMB).bounding_box()
    assert box is not None and np.hypot(box["x"] - spot[0], box["y"] - spot[1]) < 200  # near it
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "embedding_hover_thumbnail.png"))

    page.mouse.move(5, 5)  # leaving the map hides it
    playwright_api.expect(page.locator(THUMB)).to_be_hidden()

    # a click still makes the digit current (the chart re-renders with a star on it) ...
    page.mouse.click(*hover(page, found.test_bank[first, :2]))
    playwright_api.expect(page.get_by_text(f"MNIST test image #{first}").first).to_be_visible()
    wait_idle(page)
    # ... and hovering works on the re-rendered chart
    hover(page, found.test_bank[second, :2])
    expect_thumbnail(page, second, found, mnist_test)

    # a new chart: the t-SNE layout
    page.mouse.move(5, 5)
    page.locator(".st-key-dl-emb-layout").get_by_text("t-SNE", exact=True).click()
    page.get_by_text("t-SNE of the features").wait_for()  # the map's title, above the chart
    wait_idle(page)
    third = isolated_points(found.tsne, 1)[0]
    hover(page, found.tsne[third])
    expect_thumbnail(page, third, found, mnist_test)
    assert page.locator('[data-testid="stException"]').count() == 0

    # another page: the thumbnail goes with the component
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Home", exact=True).click()
    page.locator("h1").filter(has_text="digit-lens").wait_for()
    playwright_api.expect(page.locator(THUMB)).to_have_count(0)
