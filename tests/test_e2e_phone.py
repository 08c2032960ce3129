"""End to end on a phone: a 390×844 Chromium viewport with touch, as a visitor on a phone sees it.

Draws a digit with the finger (touch events, not the mouse), checks that the predictions are on
screen without scrolling, that nothing is wider than the screen, and that choosing a page in the
sidebar closes it again (it would otherwise cover the drawing pad). Screenshots go to
``test-artifacts/screenshots/phone_*.png`` (ignored by git); the README's phone picture is
refreshed on purpose (see README, Screenshots).
"""

from __future__ import annotations

import itertools

import pytest

from tests.test_e2e_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CNNS,
    DRAW,
    PAGE_SPECS,
    ROOT,
    SCREENSHOTS,
    STEP_MS,
    assert_no_exception,
    playwright_api,
    server,  # noqa: F401  (the module's server fixture)
    wait_idle,
)

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
# Every page's phone picture, for looking at; only the Draw page's goes to the README.
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
SEVEN = [(70, 55), (200, 50), (160, 140), (125, 245)]


@pytest.fixture(scope="module")
def phone(server: str):  # noqa: F811
    """A phone-sized Chromium page with touch."""
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
        )
        tab = context.new_page()
        tab.set_default_timeout(STEP_MS)
        tab.goto(f"{server}/{PAGE_SPECS['draw'].url_path}")
        yield tab
        browser.close()


def finger_stroke(page, points: list[tuple[int, int]]) -> None:
    """One stroke with a finger through ``points`` (pad pixels): touch events, 8 moves a segment."""
    box = page.locator("canvas.upper-canvas").bounding_box()
    assert box and round(box["width"]) == 280, box
    session = page.context.new_cdp_session(page)

    def touch(kind: str, points: list[tuple[float, float]]) -> None:
        touch_points = [{"x": box["x"] + x, "y": box["y"] + y} for x, y in points]
        session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})

    touch("touchStart", [points[0]])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        for k in range(1, 9):
            touch("touchMove", [(x0 + (x1 - x0) * k / 8, y0 + (y1 - y0) * k / 8)])
    touch("touchEnd", [])
    session.detach()


def assert_fits_the_screen(page, where: str) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (
        f"{where}: the page is {width} px wide on a {PHONE['width']} px screen"
    )


def test_drawing_with_a_finger_on_a_phone(phone) -> None:
    phone.locator("h1").filter(has_text=DRAW).wait_for()
    wait_idle(phone)
    sidebar = phone.locator('[data-testid="stSidebar"]')
    assert sidebar.bounding_box() is None or sidebar.bounding_box()["x"] < 0  # closed at first
    finger_stroke(phone, SEVEN)
    values = phone.locator('[data-testid="stMetricValue"]')
    playwright_api.expect(values.first).to_have_text("7")
    wait_idle(phone)
    labels = phone.locator('[data-testid="stMetricLabel"]').all_inner_texts()
    shown = dict(zip((label.strip() for label in labels), values.all_inner_texts(), strict=True))
    assert all(shown[v] == "7" for v in CNNS), shown
    assert phone.evaluate("() => window.scrollY") == 0
    first = values.first.bounding_box()
    assert first["y"] + first["height"] <= PHONE["height"], f"prediction below the fold: {first}"
    for metric in phone.locator('[data-testid="stMetric"]').all():
        box = metric.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"cut off: {box}"
    assert_fits_the_screen(phone, DRAW)
    assert_no_exception(phone, "Draw & predict (phone)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(SCREENSHOTS / "phone_draw.png"))


def test_every_page_fits_a_phone_and_closes_the_sidebar_when_chosen(phone) -> None:
    for key in [*(k for k in PAGE_SPECS if k != "draw"), "draw"]:
        phone.locator('[data-testid="stExpandSidebarButton"]').click()
        nav = phone.locator('[data-testid="stSidebarNav"]')
        playwright_api.expect(nav).to_be_visible()
        title = PAGE_SPECS[key].title
        nav.get_by_text(title, exact=True).click()
        phone.locator("h1").filter(has_text="digit-lens" if key == "home" else title).wait_for()
        wait_idle(phone)
        playwright_api.expect(nav).not_to_be_in_viewport()
        assert_fits_the_screen(phone, title)
        # touch screens would show Plotly's mode bar all the time, over titles and legends
        for bar in phone.locator(".modebar-container").all():
            assert not bar.is_visible(), f"{title}: Plotly's mode bar is shown"
        assert_no_exception(phone, f"{title} (phone)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        phone.screenshot(path=str(ARTIFACTS / f"phone_{key}.png"))
    # the drawing survived the round trip
    playwright_api.expect(phone.locator('[data-testid="stMetricValue"]').first).to_have_text("7")
