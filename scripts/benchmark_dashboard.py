"""Print how long the dashboard's server-side work takes on this machine.

1. **Stroke to prediction** (Draw page, all three models): what one rerun after a new stroke does,
   step by step, on a fresh drawing each time (no cache hits): decode the canvas PNG the browser
   sends, hash it, preprocess, predict with every model, build and serialise the bar chart and the
   28×28 heatmap, encode the preprocessing-stage previews.
2. **Whole script runs** with ``streamlit.testing.v1.AppTest``: the Draw page after a new input
   (cache miss), and every page's first render and rerun once the models are loaded. AppTest adds
   its own overhead (it parses every element), so these are upper bounds of the server's time.

Usage: ``python scripts/benchmark_dashboard.py [--repeats N] [--checkpoints DIR]``.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent


def canvas_data_url(shift: int) -> str:
    """A 280×280 "7" drawn like the canvas draws it, as the PNG data URL the browser sends."""
    image = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    pen = ImageDraw.Draw(image)
    points = [(70 + shift % 40, 55), (200, 50 + shift % 30), (160, 140), (125 + shift % 20, 245)]
    pen.line(points, fill=(0, 0, 0, 255), width=18, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def as_streamlit_sends(figure: object) -> str:
    """What ``st.plotly_chart`` does with a figure: validate it, then serialise it to JSON."""
    import plotly.io
    import plotly.tools

    validated = plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True)
    return plotly.io.to_json(validated, validate=False)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms"


def stroke_to_prediction(repeats: int, directory: str) -> None:
    """Time each step of a Draw-page rerun after a new stroke."""
    import hashlib

    from core.preprocess import preprocess
    from dashboard import charts, images, loaders, results

    urls = [canvas_data_url(i) for i in range(repeats + 5)]
    steps: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = fn()
        steps.setdefault(name, []).append(1000 * (time.perf_counter() - start))
        return value

    for index, url in enumerate(urls):
        encoded = url.split(";base64,", 1)[1]
        array = timed(
            "decode canvas PNG",
            lambda e=encoded: np.asarray(Image.open(io.BytesIO(base64.b64decode(e)))),
        )
        timed("hash drawing", lambda a=array: hashlib.blake2b(a.tobytes(), digest_size=12).digest())
        result = timed("preprocess", lambda a=array: preprocess(a))

        # The page's own cached call; every drawing is new, so the cache always misses.
        probs = timed(
            "predict, 3 models (cache miss, locks)",
            lambda r=result: results._predictions(
                r.image, 0.7, directory, loaders.directory_signature(directory)
            ),
        )
        timed(
            "bar chart + 28×28 heatmap (as st.plotly_chart)",
            lambda p=probs, r=result: (
                as_streamlit_sends(
                    charts.probability_figure({v: q.probabilities for v, q in p.items()}, 0.7)
                ),
                as_streamlit_sends(images.digit_figure(r.image, height=190)),
            ),
        )
        timed(
            "stage previews (PNG encode)",
            lambda r=result: [
                Image.fromarray(images.stage_preview(s)).save(io.BytesIO(), format="PNG")
                for s in r.stages.values()
            ],
        )
        if index < 5:  # warm-up
            steps.clear()
    print(f"\n== Stroke to prediction, Draw page, all three models ({repeats} fresh drawings)")
    totals = [sum(values) for values in zip(*steps.values(), strict=True)]
    for name, values in steps.items():
        print(f"  {name:48s} {percentiles(values)}")
    print(f"  {'total server-side work':48s} {percentiles(totals)}")


def page_runs(repeats: int) -> None:
    """Whole-script timings of every page with AppTest, once the models are loaded.

    Each page gets one AppTest (its one-off component scan is excluded). "cold" clears every
    ``st.cache_data`` entry and shows a new digit, so nothing the page computes is cached (the
    models stay loaded); "rerun" is the same page again, as after moving a widget.
    """
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.preprocess import preprocess
    from dashboard import navigation, state

    home = ROOT / "dashboard" / "app.py"
    pages = [None, *(spec.file for key, spec in navigation.PAGES.items() if key != "home")]

    def current(shift: int) -> state.CurrentInput:
        encoded = canvas_data_url(shift).split(";base64,", 1)[1]
        result = preprocess(base64.b64decode(encoded))
        return state.CurrentInput.from_result(result, "canvas", "canvas")

    start = time.perf_counter()
    AppTest.from_file(str(home), default_timeout=300).run()
    print(
        "\n== Whole script runs (AppTest)\n"
        f"  first run ever (imports + model load): {time.perf_counter() - start:.2f} s"
    )

    draw = AppTest.from_file(str(home), default_timeout=120).switch_page(pages[1])
    draw.session_state[state.INPUT_KEY] = current(0)
    draw.run()
    samples = []
    for i in range(1, repeats + 1):
        draw.session_state[state.INPUT_KEY] = current(i)
        start = time.perf_counter()
        draw.run()
        samples.append(1000 * (time.perf_counter() - start))
    print(f"  Draw page rerun with a new drawing:      {percentiles(samples)}")

    rounds = max(3, repeats // 10)
    print(f"  {'page':38s} {'cold (median)':>14s} {'cold (max)':>11s} {'rerun':>8s}")
    for page in pages:
        at = AppTest.from_file(str(home), default_timeout=120)
        at.session_state[state.INPUT_KEY] = current(500)
        if page:
            at.switch_page(page)
        at.run()
        cold, warm = [], []
        for i in range(rounds):
            st.cache_data.clear()
            at.session_state[state.INPUT_KEY] = current(1000 + i)
            start = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - start)
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        flag = f"  !! {problems}" if problems else ""
        print(
            f"  {page or 'Home.py':38s} {statistics.median(cold):12.2f} s {max(cold):9.2f} s "
            f"{statistics.median(warm):6.2f} s{flag}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="fresh drawings to time")
    parser.add_argument("--checkpoints", help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--skip-pages", action="store_true", help="only the stroke benchmark")
    args = parser.parse_args(argv)
    from dashboard import loaders

    if args.checkpoints:
        os.environ[loaders.CHECKPOINTS_ENV_VAR] = args.checkpoints
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    stroke_to_prediction(args.repeats, loaders.checkpoint_dir())
    if not args.skip_pages:
        page_runs(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
