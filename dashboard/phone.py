"""Phones and narrow windows: close the sidebar once a page is chosen; no Plotly mode bar.

Streamlit closes it by itself only for browsers that report a mobile user agent; a narrow window
(a phone in desktop mode, a small tablet, a split screen) keeps it open over the drawing pad, where
strokes then draw nothing. A tiny script-only component, mounted in the sidebar on every run,
clicks the sidebar's own collapse button when the page changed and the screen is narrower than
Streamlit's breakpoint for an overlaid sidebar.

On touch screens Plotly shows its mode bar all the time, over chart titles and legends; below the
same breakpoint it is hidden (the charts still zoom with two fingers; figures download from a
desktop browser).
"""

from __future__ import annotations

import streamlit as st

# Streamlit overlays the sidebar on the page below its "md" breakpoint (768 px).
NARROW_PX = 768

_JS = """
export default function ({ data }) {
  const previous = window.__digitLensPage;
  window.__digitLensPage = data.page;
  if (previous === undefined || previous === data.page || window.innerWidth >= data.narrow) return;
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  if (!sidebar || sidebar.getAttribute("data-collapsed") !== "false") return;
  const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (button) button.click();
}
"""

_CSS = f"""
@media (max-width: {NARROW_PX - 0.02}px) {{
  .js-plotly-plot .modebar-container {{ display: none !important; }}
}}
"""

_COMPONENT = st.components.v2.component("digit_lens.phone", js=_JS, css=_CSS, isolate_styles=False)


def close_sidebar_after_navigation(page: str) -> None:
    """Mount the helper for the page now shown (``page``: any name unique to the page)."""
    with st.sidebar:
        _COMPONENT(key="dl.phone.sidebar", data={"page": page, "narrow": NARROW_PX}, height=0)
