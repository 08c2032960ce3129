"""What a user feels, measured in a real Chromium: first paint, ready, stroke to prediction, page
switches.

Starts ``streamlit run dashboard/Home.py`` on a free port, opens Debian's Chromium through
Playwright (never a downloaded browser) and prints medians and 90th percentiles:

- cold start: from launching the server to its answering, then from opening the page (what a
  visitor does once the server says it is up) to the first painted text and to a Draw page that
  answers a stroke, and both from launching the server;
- stroke to prediction: from mouse-up on the drawing pad to the new prediction on screen, and to
  the page being idle again (the script run finished);
- page switches: from the click in the sidebar to the new page idle.

Usage: ``uv run python scripts/benchmark_browser.py [--strokes 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from scripts.browser import CHROMIUM, CHROMIUM_ARGS, dashboard_server

IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]');
}"""
# Digits drawn as one stroke each: a 1, a 7 and an L-shaped 4-ish stroke, shifted per round.
STROKES = [
    [(145, 45), (142, 140), (138, 240)],
    [(70, 55), (200, 50), (160, 140), (125, 245)],
]


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"  {name:46} p50 {statistics.median(ordered):7.0f} ms   p90 {p90:7.0f} ms  (n={len(ordered)})"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=20, help="strokes to time")
    parser.add_argument("--switches", type=int, default=6, help="page switches to time")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    with dashboard_server() as url:
        serving = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(120_000)
            opened = time.perf_counter()
            page.goto(f"{url}/draw")
            page.wait_for_selector("[data-testid='stMain'] >> text=/./")
            first_paint = time.perf_counter()
            page.locator("canvas.upper-canvas").wait_for()
            page.wait_for_function(IDLE_JS)
            ready = time.perf_counter()
            print(
                f"cold start: server answering {serving:.1f} s after launch; after opening the "
                f"page: first paint {first_paint - opened:.1f} s, ready to draw "
                f"{ready - opened:.1f} s (from launch: {first_paint - started:.1f} s and "
                f"{ready - started:.1f} s)"
            )

            to_prediction, to_idle = [], []
            for i in range(args.strokes):
                if i:
                    page.get_by_role("button", name="Clear the canvas").click()
                page.wait_for_timeout(400)  # the canvas component settles after (re)mounting
                page.wait_for_function(IDLE_JS)
                page.wait_for_timeout(200)
                canvas = page.locator("canvas.upper-canvas").last
                canvas.wait_for()
                box = canvas.bounding_box()
                points = [(x + (i % 5) * 3, y) for x, y in STROKES[i % len(STROKES)]]
                page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
                page.mouse.down()
                for x, y in points[1:]:
                    page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
                page.evaluate("() => { window.__metricsBefore = document.querySelectorAll("
                              "'[data-testid=\"stMetricValue\"]').length; }")  # fmt: skip
                up = time.perf_counter()
                page.mouse.up()
                page.wait_for_function(
                    "() => document.querySelectorAll('[data-testid=\"stMetricValue\"]').length > 0",
                    polling="raf",
                )
                to_prediction.append(1000 * (time.perf_counter() - up))
                page.wait_for_function(IDLE_JS, polling="raf")
                to_idle.append(1000 * (time.perf_counter() - up))
            print("stroke to prediction (Draw page, all models):")
            print(summary("mouse-up to prediction shown", to_prediction))
            print(summary("mouse-up to page idle", to_idle))

            switches = []
            nav = page.locator('[data-testid="stSidebarNav"]')
            for i in range(args.switches):
                label = ("Compare architectures", "Draw & predict")[i % 2]
                start = time.perf_counter()
                nav.get_by_text(label, exact=True).click()
                page.locator("h1").filter(has_text=label).wait_for()
                page.wait_for_function(IDLE_JS)
                switches.append(1000 * (time.perf_counter() - start))
            print(summary("page switch (click to idle)", switches))
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
