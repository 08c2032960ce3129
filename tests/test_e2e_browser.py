"""End to end in a real Chromium: start the dashboard, draw digits with the mouse, upload a PNG,
visit every page, check that no page shows an exception, and save a screenshot of each page.

Screenshots go to ``test-artifacts/screenshots/`` (ignored by git): tests never change tracked
files. The README's pictures are refreshed on purpose, with
``DIGIT_LENS_SCREENSHOTS=dashboard/screenshots uv run pytest tests/test_e2e_browser.py``.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the Python ``playwright``
package; it never downloads a browser. One server and one browser session for the whole journey.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.checkpoints import DEFAULT_DIRECTORY, load_model
from core.evalfile import read_eval_file
from core.evaluate import softmax
from core.explain import activations
from core.inputs import image_to_input
from core.models import REGISTRY
from core.preprocess import preprocess
from core.units import ablate, cell_arithmetic, channel_ranking
from dashboard.navigation import PAGES as PAGE_SPECS
from scripts.browser import CHROMIUM as CHROMIUM_PATH
from scripts.browser import CHROMIUM_ARGS
from scripts.browser import dashboard_server as launch_dashboard
from tests.conftest import find_data_dir

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(CHROMIUM_PATH)
SCREENSHOTS = Path(
    os.environ.get("DIGIT_LENS_SCREENSHOTS") or ROOT / "test-artifacts" / "screenshots"
)
# No file watcher, no usage statistics, full error details in the page.
SERVER_OPTIONS = (
    "--server.fileWatcherType", "none",
    "--browser.gatherUsageStats", "false",
    "--client.showErrorDetails", "full",
)  # fmt: skip
# Screenshot name of each page (the README embeds them under these names).
SHOT_NAMES = {
    "home": "home",
    "draw": "draw_and_predict",
    "activations": "activations",
    "attributions": "gradcam_and_attributions",
    "compare": "compare_architectures",
    "errors": "error_browser",
    "rejection": "rejection_and_ood",
    "units": "what_each_unit_does",
    "embedding": "embedding_and_neighbours",
}
# Sidebar label (the page's registry title) -> screenshot name.
PAGES = {spec.title: SHOT_NAMES.get(key, key) for key, spec in PAGE_SPECS.items()}
DRAW = PAGE_SPECS["draw"].title
UNITS = PAGE_SPECS["units"].title
CNNS = [name for name, spec in REGISTRY.items() if spec.conv_blocks]
STEP_MS = 60_000

pytestmark = pytest.mark.e2e

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python playwright package is not installed"
)
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's browser with `apt-get install -y chromium`",
        allow_module_level=True,
    )


@contextmanager
def dashboard_server(log_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """The shared launcher (:func:`scripts.browser.dashboard_server`) with the server's log kept
    in ``log_dir``: a server that never answers fails the test with its log, and a log showing a
    traceback is printed afterwards."""
    log_path = log_dir / "server.log"
    try:
        with log_path.open("wb") as log, ExitStack() as stack:
            try:
                url = stack.enter_context(launch_dashboard(env, log, SERVER_OPTIONS))
            except RuntimeError as error:
                pytest.fail(f"{error}:\n{log_path.read_text(errors='replace')}")
            yield url
    finally:
        server_log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if "Traceback" in server_log:
            print(server_log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard for this module; it finds MNIST where the tests do (``../shared/data``
    needs no environment variable)."""
    env = dict(os.environ)
    data_dir = find_data_dir()
    if data_dir is not None:
        env["DIGIT_LENS_DATA"] = str(data_dir)
    with dashboard_server(tmp_path_factory.mktemp("streamlit"), env) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str):
    """One Chromium page for the whole journey."""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1440, "height": 1000})
        tab.set_default_timeout(STEP_MS)
        tab.goto(server)
        yield tab
        browser.close()


IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.every((chart) => chart.querySelector('.main-svg'));
}"""


def wait_idle(page) -> None:
    """Wait until the script run started by the last action has finished and charts are drawn."""
    page.wait_for_timeout(400)
    page.wait_for_function(IDLE_JS, timeout=STEP_MS)
    page.wait_for_timeout(200)


def assert_no_exception(page, where: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"exception on {where}"
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "Traceback" not in text, f"traceback text on {where}"


def open_page(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    heading = "digit-lens" if label == "Home" else label
    page.locator("h1").filter(has_text=heading).wait_for()
    wait_idle(page)


def stroke(page, points: list[tuple[int, int]]) -> None:
    """One mouse stroke through ``points`` (canvas pixels) on the drawable canvas."""
    canvas = page.locator("canvas.upper-canvas")
    box = canvas.bounding_box()
    assert box and round(box["width"]) == 280 and round(box["height"]) == 280
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=12)
    page.mouse.up()


def metrics(page) -> dict[str, str]:
    """Every metric the page shows: its value by its label."""
    labels = page.locator('[data-testid="stMetricLabel"]').all_inner_texts()
    values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    return {label.strip(): value for label, value in zip(labels, values, strict=True)}


def predictions(page) -> dict[str, str]:
    """Each model's shown answer on the Draw page, by model name."""
    return metrics(page)


def expect_prediction(page, digit: str) -> None:
    """Every CNN reads ``digit`` (the baselines are shown too, and may not)."""
    playwright_api.expect(page.locator('[data-testid="stMetricValue"]').first).to_have_text(digit)
    wait_idle(page)
    shown = predictions(page)
    assert set(CNNS) <= set(shown) and all(shown[v] == digit for v in CNNS), shown


def screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover label in the picture
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    wait_idle(page)
    page.wait_for_timeout(600)  # Plotly redraws after the resize
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(size)


def four_png(path: Path) -> Path:
    """A photo-like "4": dark ink on light-grey paper, off centre."""
    image = Image.new("L", (400, 300), 215)
    pen = ImageDraw.Draw(image)
    pen.line([(230, 40), (150, 190), (290, 190)], fill=30, width=16, joint="curve")
    pen.line([(255, 110), (255, 270)], fill=30, width=16)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def click_data_point(
    page, chart_index: int, x: float, y: float, width: int, height: int, within=None
) -> None:
    """Click data point (x, y) of a chart whose axes span [-0.5, width - 0.5] and, top to
    bottom, [-0.5, height - 0.5] (heatmaps with the y axis reversed): the ``chart_index``-th
    chart of the page, or of the locator ``within``."""
    scope = page if within is None else within
    area = scope.locator('[data-testid="stPlotlyChart"] .nsewdrag').nth(chart_index)
    box = area.bounding_box()
    page.mouse.click(
        box["x"] + (x + 0.5) / width * box["width"], box["y"] + (y + 0.5) / height * box["height"]
    )
    wait_idle(page)


def check_clicking_a_feature_map_enlarges_it(page) -> None:
    """cnn3's first layer: 32 maps of 28×28 in 8 columns; click channel 13's tile."""
    channel, columns, side, rows = 13, 8, 28, 4
    row, col = divmod(channel, columns)
    width, height = columns * (side + 1) - 1, rows * (side + 1) - 1
    click_data_point(
        page, 0, col * (side + 1) + side // 2, row * (side + 1) + side // 2, width, height
    )
    playwright_api.expect(page.locator('[data-testid="stNumberInput"] input').first).to_have_value(
        str(channel)
    )
    zoom_title = page.locator(".gtitle").filter(has_text=f"channel {channel}")
    playwright_api.expect(zoom_title.first).to_be_visible()


def check_clicking_a_confusion_cell_shows_its_mistakes(page) -> None:
    """Click cnn3's most frequent confusion and expect the gallery of exactly those mistakes."""
    arrays = read_eval_file("cnn3", os.environ.get("DIGIT_LENS_CHECKPOINTS") or DEFAULT_DIRECTORY)
    labels, predicted = arrays.labels, arrays.predictions
    pairs = Counter(zip(labels[labels != predicted], predicted[labels != predicted], strict=True))
    (true, pred), count = pairs.most_common(1)[0]
    click_data_point(page, 0, int(pred), int(true), 10, 10)
    expected = f"{count} mistakes for true digit {true}, predicted as {pred}"
    playwright_api.expect(page.get_by_text(expected)).to_be_visible()
    if find_data_dir() is None:  # no MNIST images here: the page says so instead of a gallery
        playwright_api.expect(
            page.get_by_text("The test images are not available here")
        ).to_be_visible()
        return
    # the heading can arrive a moment before the gallery's images: wait for all of them (the
    # mistakes' captions read "#index: true → predicted"; neighbour thumbnails follow them)
    gallery = page.locator('[data-testid="stImageCaption"]').filter(has_text="→")
    playwright_api.expect(gallery).to_have_count(count)
    captions = gallery.all_inner_texts()
    assert all(f": {true} → {pred} (" in caption for caption in captions), captions
    assert_no_exception(page, "Error browser (cell clicked)")


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def number(text: str) -> float:
    """The first number in ``text`` ("99.48%" -> 99.48)."""
    found = NUMBER.search(text)
    assert found, f"no number in {text!r}"
    return float(found.group())


def assert_percent(shown: str, probability: float) -> None:
    """``shown`` ("99.994%": as many decimals as it needs) is ``probability`` to its decimals."""
    decimals = len(shown.strip().rstrip("%").partition(".")[2])
    tolerance = 0.5 * 10**-decimals + 1e-9
    assert number(shown) == pytest.approx(100 * probability, abs=tolerance), (shown, probability)


def number_input(page, label: str):
    """The text box of the number input labelled ``label``."""
    widget = page.locator('[data-testid="stNumberInput"]').filter(
        has=page.get_by_text(label, exact=True)
    )
    return widget.locator("input")


@dataclass
class UnitView:
    """What the units page shows, read from the page, and core's view of the same: the model, the
    uploaded "4" as the page feeds it, and the calibration temperature."""

    variant: str
    layer: int
    channel: int
    model: torch.nn.Module
    x: torch.Tensor
    temperature: float


def unit_view(page, four: Path) -> UnitView:
    """The units page's model and layer (its cell map's key carries them) and channel."""
    classes = page.locator('[class*="st-key-dl-units-cellmap-"]').get_attribute("class") or ""
    found = re.search(r"st-key-dl-units-cellmap-(\w+)-(\d+)", classes)
    assert found, classes
    variant, layer = found.group(1), int(found.group(2))
    channel = int(number_input(page, "Channel").input_value())
    directory = os.environ.get("DIGIT_LENS_CHECKPOINTS") or DEFAULT_DIRECTORY
    model, metadata = load_model(variant, directory)
    # what state.take_upload makes of the file: the preprocessed 28×28 image, as float32
    image = np.ascontiguousarray(preprocess(four.read_bytes()).image, dtype=np.float32)
    x = image_to_input(image, metadata["normalization"])
    return UnitView(variant, layer, channel, model, x, float(metadata.get("temperature", 1.0)))


def distinct_cell(values: np.ndarray, exclude: tuple[int, int]) -> tuple[int, int]:
    """The cell whose value differs most from each of its 8 neighbours' (so a click that landed
    next to it would show another number), inside a 2×2 pool window, other than ``exclude``."""
    padded = np.pad(values, 1, mode="edge")  # a border cell's margin is 0: never chosen
    height, width = values.shape
    shifted = [
        padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if dy or dx
    ]
    margin = np.min([np.abs(values - other) for other in shifted], axis=0)
    margin[height // 2 * 2 :, :] = margin[:, width // 2 * 2 :] = 0
    margin[exclude] = 0
    row, col = np.unravel_index(margin.argmax(), margin.shape)
    assert margin[row, col] > 1e-3, "no cell stands out from its neighbours"
    return int(row), int(col)


def check_clicking_a_cell_shows_its_arithmetic(page, four: Path) -> None:
    """Click a cell of the unit's map: the arithmetic shown is that cell's, and it lands on the
    value the model's own forward pass gives there."""
    page.get_by_role("tab", name="The arithmetic").click()
    wait_idle(page)
    view = unit_view(page, four)
    values = activations(view.model, view.x)[view.layer].values[view.channel]
    height, width = values.shape
    shown = (
        int(number_input(page, "Row").input_value()),
        int(number_input(page, "Column").input_value()),
    )
    row, col = distinct_cell(values, shown)
    cell_map = page.locator(f".st-key-dl-units-cellmap-{view.variant}-{view.layer}")
    click_data_point(page, 0, col, row, width, height, within=cell_map)
    playwright_api.expect(number_input(page, "Row")).to_have_value(str(row))
    playwright_api.expect(number_input(page, "Column")).to_have_value(str(col))
    wait_idle(page)
    assert_no_exception(page, f"{UNITS} (cell clicked)")

    expected = cell_arithmetic(view.model, view.x, view.layer, view.channel, (row, col))
    code = page.locator('[data-testid="stCode"]').inner_text()
    model_line = re.search(r"forward pass gives (-?[\d.]+) at \((\d+), (\d+)\)", code)
    assert model_line, code
    assert (int(model_line.group(2)), int(model_line.group(3))) == (row, col), code
    assert float(model_line.group(1)) == pytest.approx(float(values[row, col]), abs=2e-6), code
    # the hand arithmetic reproduces it: conv sum, BatchNorm, LeakyReLU of exactly this cell
    conv = re.search(r"patch · kernel = (-?[\d.]+)", code)
    relu = re.search(r"LeakyReLU .*= (-?[\d.]+)$", code, re.MULTILINE)
    assert conv and relu, code
    assert float(conv.group(1)) == pytest.approx(expected.cell.conv, abs=2e-6), code
    assert float(relu.group(1)) == pytest.approx(expected.cell.activation, abs=2e-6), code
    assert float(relu.group(1)) == pytest.approx(float(values[row, col]), abs=1e-5), code
    size = round(len(expected.pool) ** 0.5)
    assert f"pooled cell ({row // size}, {col // size})" in code, code
    assert f"→ max {expected.pooled:.6f}" in code, code
    rows, cols = expected.cell.rows, expected.cell.cols
    patch = f"rows {rows.min()}–{rows.max()}, cols {cols.min()}–{cols.max()}"
    playwright_api.expect(page.get_by_text(patch).first).to_be_visible()
    # the red outline moved to the clicked cell
    outline = cell_map.locator(".js-plotly-plot").evaluate("gd => gd.layout.shapes[0]")
    assert (outline["x0"], outline["y0"]) == (col - 0.5, row - 0.5), outline


def probability_bars(page) -> dict[str, np.ndarray]:
    """The probability chart's bars (exact values, not the rounded labels), by trace name."""
    chart = page.locator(".st-key-dl-units-probs .js-plotly-plot")
    bars = chart.evaluate("gd => gd._fullData.map((t) => [t.name, Array.from(t.y)])")
    return {name: np.asarray(y, dtype=float) for name, y in bars}


def channel_picker(page):
    """The units page's multiselect of channels to switch off."""
    return page.locator('[data-testid="stMultiSelect"]').filter(has_text="Channels to switch off")


def expect_channels_off(page, view: UnitView, off: list[int], digit: int) -> dict[str, str]:
    """The page shows ``off`` switched off and the probabilities core's ablation gives."""
    label = f"P({digit}), {len(off)} channel(s) off"
    playwright_api.expect(page.get_by_text(label, exact=True)).to_be_visible()
    wait_idle(page)
    tags = channel_picker(page).locator('[data-testid="stMultiSelectTagsContainer"]')
    assert tags.inner_text().split() == [str(c) for c in off]
    logits = ablate(view.model, view.x, view.layer, off)
    expected = softmax(logits, view.temperature)
    shown = metrics(page)
    assert_percent(shown[label], expected[digit])
    logit = number(shown[f"logit {digit}, {len(off)} channel(s) off"])
    assert logit == pytest.approx(logits[digit], abs=0.00051), shown
    bars = probability_bars(page)
    np.testing.assert_allclose(bars["switched off"], expected, atol=1e-6)
    assert bars["switched off"][digit] < bars["all on"][digit]
    return shown


def check_switching_channels_off_changes_the_probabilities(page, four: Path) -> None:
    """Switch the channel that matters most off in the multiselect, then the 8 that matter most
    with the button: the probabilities and logit shown are core's ablation of the "4"."""
    page.get_by_role("tab", name="Switch channels off").click()
    wait_idle(page)
    view = unit_view(page, four)
    ranking = channel_ranking(view.model, view.x, view.layer)
    digit, before = ranking.target, metrics(page)
    assert digit == 4
    intact = softmax(ranking.logits, view.temperature)
    assert before[f"P({digit}), all channels on"] == before[f"P({digit}), 0 channel(s) off"]
    assert_percent(before[f"P({digit}), all channels on"], intact[digit])
    np.testing.assert_allclose(probability_bars(page)["all on"], intact, atol=1e-6)
    # the ranking table lists the channels in core's order, with their logit drops
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="then predicts")
    cells = table.locator("tr").evaluate_all(
        "rows => rows.map((r) => [...r.querySelectorAll('td')].map((c) => c.innerText))"
    )
    ranked = [row for row in cells if row][:8]
    assert [int(row[0]) for row in ranked] == [int(c) for c in ranking.channels[:8]], ranked
    drops = [float(row[1]) for row in ranked]
    np.testing.assert_allclose(drops, ranking.drops[:8], atol=1e-5)

    first = int(ranking.channels[0])
    channel_picker(page).locator("input").click()
    page.keyboard.type(str(first))
    page.get_by_role("option", name=str(first), exact=True).click()
    page.keyboard.press("Escape")
    one = expect_channels_off(page, view, [first], digit)
    assert one[f"P({digit}), 1 channel(s) off"] != before[f"P({digit}), all channels on"]
    assert one[f"logit {digit}, 1 channel(s) off"] != before[f"logit {digit}, 0 channel(s) off"]

    page.get_by_role("button", name="Off: the 8 that matter most").click()
    most = [int(c) for c in ranking.channels[:8]]
    eight = expect_channels_off(page, view, most, digit)
    assert eight[f"P({digit}), 8 channel(s) off"] != before[f"P({digit}), all channels on"]
    assert_no_exception(page, f"{UNITS} (channels switched off)")


def test_draw_upload_and_every_page_in_chromium(page, tmp_path: Path) -> None:
    page.locator("h1").filter(has_text="digit-lens").wait_for()
    wait_idle(page)
    assert_no_exception(page, "Home")
    screenshot(page, PAGES["Home"])

    open_page(page, DRAW)
    assert page.get_by_text("Draw a digit").count() >= 1  # nothing predicted before a stroke
    stroke(page, [(145, 45), (142, 140), (138, 240)])
    expect_prediction(page, "1")

    page.get_by_role("button", name="Clear the canvas").click()
    playwright_api.expect(page.get_by_text("Draw a digit")).to_be_visible()
    # a cleared canvas is never predicted (the old metrics stay until the rerun finishes)
    playwright_api.expect(page.locator('[data-testid="stMetricValue"]')).to_have_count(0)
    wait_idle(page)
    assert predictions(page) == {}
    stroke(page, [(70, 55), (200, 50), (160, 140), (125, 245)])
    expect_prediction(page, "7")
    assert_no_exception(page, "Draw & predict (drawn 7)")
    screenshot(page, PAGES[DRAW])

    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    four = four_png(tmp_path / "four.png")
    uploader.set_input_files(str(four))
    expect_prediction(page, "4")
    assert_no_exception(page, "Draw & predict (uploaded 4)")

    for label in list(PAGES)[2:]:
        open_page(page, label)
        assert page.locator(".js-plotly-plot").count() >= 1, f"no chart on {label}"
        assert_no_exception(page, label)
        if label == "Activations":
            check_clicking_a_feature_map_enlarges_it(page)
        elif label == "Error browser":
            check_clicking_a_confusion_cell_shows_its_mistakes(page)
        elif label == UNITS:
            check_switching_channels_off_changes_the_probabilities(page, four)
            check_clicking_a_cell_shows_its_arithmetic(page, four)  # its tab is the screenshot
        screenshot(page, PAGES[label])

    open_page(page, DRAW)
    assert_no_exception(page, "Draw & predict (revisited)")
    shown = predictions(page)  # the current input survived the tour
    assert all(shown[v] == "4" for v in CNNS), shown
