"""Speed of the Embedding & neighbours page: server-side p50/p95 and the map's render in Chromium.

Server side, one intra-op thread as in the dashboard, on MNIST test digits (or a drawn 7):

- placing one input: forward pass, projection, nearest training and test digits, t-SNE place
  (target 20 ms);
- the counterfactual towards the runner-up class (target 300 ms).

Browser (Debian's Chromium through Playwright, never a downloaded browser): ``Plotly.newPlot`` of
the page's map figure (10,000 Scattergl points) until the next painted frame (target 1 s), SVG
``scatter`` for comparison; with ``--page``, a real ``streamlit run`` server: opening the page
until the map is drawn, a click on a point until that digit is the current one, and a
screenshot in ``test-artifacts/``.

Usage: ``python scripts/benchmark_embedding.py [--variants cnn3] [--repeats 50] [--page]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import plotly
import torch

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, load_model
from core.counterfactual import counterfactual
from core.data import DataUnavailableError, load_mnist_test
from core.embedding import EmbeddingFileError
from core.models import VARIANTS
from core.timing import time_calls
from dashboard import embedding_results
from scripts.benchmark_browser import IDLE_JS
from scripts.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, dashboard_server

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
RENDER_JS = """async ([figure, runs]) => {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const div = document.getElementById('plot');
    Plotly.purge(div);
    const start = performance.now();
    await Plotly.newPlot(div, figure.data, figure.layout);
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    times.push(performance.now() - start);
  }
  return times;
}"""
POINT_JS = """(index) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')][0];
  for (const trace of gd._fullData) {
    const at = (trace.customdata || []).findIndex(row => row && row[0] === index);
    if (at < 0) continue;
    const layout = gd._fullLayout, box = gd.getBoundingClientRect();
    return [box.left + layout._size.l + layout.xaxis.l2p(trace.x[at]),
            box.top + layout._size.t + layout.yaxis.l2p(trace.y[at])];
  }
  return null;
}"""


def inputs(count: int) -> list[np.ndarray]:
    """MNIST test digits in [0, 1] (a drawn bar-and-stroke 7 when MNIST is absent)."""
    try:
        images, _ = load_mnist_test()
        return [images[i].numpy().astype(np.float32) / 255 for i in range(count)]
    except DataUnavailableError:
        seven = np.zeros((28, 28), np.float32)
        seven[6:9, 7:21] = 1.0
        for row in range(9, 23):
            seven[row, 20 - (row - 9) // 2 : 22 - (row - 9) // 2] = 1.0
        return [seven]


def server_side(variant: str, repeats: int) -> None:
    """p50/p95 of placing one input and of its counterfactual."""
    model, metadata = load_model(variant, DEFAULT_DIRECTORY)
    found = embedding_results.read_embedding(variant, str(DEFAULT_DIRECTORY))
    digits = inputs(20)
    turn = iter(range(10**9))

    def place_one() -> None:
        embedding_results.locate(model, metadata, found, digits[next(turn) % len(digits)])

    def change_one() -> None:
        image = digits[next(turn) % len(digits)]
        place = embedding_results.locate(model, metadata, found, image)
        target = int(np.argsort(-place.probabilities)[1])
        counterfactual(model, image, target, metadata["normalization"])

    print(time_calls(place_one, repeats).row(f"{variant}: neighbours + placement", 20))
    print(
        time_calls(change_one, max(10, repeats // 2), warmup=2).row(
            f"{variant}: counterfactual", 300
        )
    )


def render_in_chromium(variant: str, runs: int) -> None:
    """Time Plotly.newPlot of the map figure (Scattergl, then SVG scatter) in Chromium."""
    from playwright.sync_api import sync_playwright

    found = embedding_results.read_embedding(variant, str(DEFAULT_DIRECTORY))
    figure = embedding_results.map_figure(
        found.test_bank[:, :2], found.test_labels, found.test_predictions, True,
        current=found.test_bank[0, :2], title="benchmark",
    )  # fmt: skip
    gl = json.loads(figure.to_json())
    svg = json.loads(figure.to_json().replace('"scattergl"', '"scatter"'))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_content("<div id='plot' style='width:1050px;height:640px'></div>")
        page.add_script_tag(path=str(PLOTLY_JS))
        webgl = page.evaluate("() => !!document.createElement('canvas').getContext('webgl')")
        for name, spec, count in (("Scattergl", gl, runs), ("SVG scatter", svg, max(3, runs // 4))):
            times = sorted(page.evaluate(RENDER_JS, [spec, count]))
            p90 = times[round(0.9 * (len(times) - 1))]
            print(f"  {variant}: {len(found.test_labels):,} points, {name:11} in Chromium  p50 "
                  f"{statistics.median(times):7.0f} ms   p90 {p90:7.0f} ms  (n={len(times)})")  # fmt: skip
        print(f"  WebGL available in this Chromium: {webgl}")
        browser.close()


def page_in_chromium(variant: str) -> None:
    """Open the page in a real server, click a point, save a screenshot."""
    from playwright.sync_api import sync_playwright

    with dashboard_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/embedding?model={variant}")
        page.wait_for_function(IDLE_JS)  # warm: models and embedding loaded once
        for label in ("first open (warm server)", "second open"):
            started = time.perf_counter()
            page.goto(f"{url}/embedding?model={variant}")
            page.wait_for_selector(".js-plotly-plot .gl-container canvas, .js-plotly-plot svg")
            page.wait_for_function(IDLE_JS)
            print(
                f"  page {label}: map drawn and page idle {1000 * (time.perf_counter() - started):.0f} ms"
            )
        spot = page.evaluate(POINT_JS, 0)
        if spot:
            started = time.perf_counter()
            page.mouse.click(*spot)
            page.get_by_text("Nearest neighbours").wait_for()
            page.wait_for_function(IDLE_JS)
            print(
                f"  click on test #0 → neighbours shown: {1000 * (time.perf_counter() - started):.0f} ms"
            )
        out = ROOT / "test-artifacts" / f"embedding_{variant}.png"
        out.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        print(f"  screenshot: {out}")
        browser.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=50, help="timed placements per model")
    parser.add_argument("--renders", type=int, default=8, help="timed map renders in Chromium")
    parser.add_argument("--no-browser", action="store_true", help="server-side figures only")
    parser.add_argument("--page", action="store_true", help="also open the page in a server")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for variant in args.variants:
        try:
            server_side(variant, args.repeats)
        except (CheckpointError, EmbeddingFileError) as error:
            print(f"  {variant}: skipped ({error})")
    shown = [v for v in args.variants if (DEFAULT_DIRECTORY / f"embedding_{v}.npz").exists()]
    if shown and not args.no_browser:
        chosen = "cnn3" if "cnn3" in shown else shown[0]
        render_in_chromium(chosen, args.renders)
        if args.page:
            page_in_chromium(chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
