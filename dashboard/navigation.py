"""The dashboard's pages, listed once: title, file, icon and URL of each.

``dashboard/app.py`` (the script every visit runs) hands this list to ``st.navigation``, so the
sidebar, each page's heading, the Home page's links and the tests all read the same entries; a new
page is its file in ``views/`` plus one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard import phone, warmup


@dataclass(frozen=True)
class PageSpec:
    """One page: ``file`` is relative to ``dashboard/``; ``url_path`` is its address."""

    key: str
    title: str
    file: str
    icon: str
    url_path: str
    summary: str


PAGES: dict[str, PageSpec] = {
    spec.key: spec
    for spec in (
        PageSpec(
            "home",
            "Home",
            "views/home.py",
            ":material/home:",
            "home",
            "what this is, the shipped models, their training curves and model cards",
        ),
        PageSpec(
            "draw",
            "Draw & predict",
            "views/draw.py",
            ":material/draw:",
            "draw",
            "draw or upload a digit and see every model's top 3 live",
        ),
        PageSpec(
            "activations",
            "Activations",
            "views/activations.py",
            ":material/grid_view:",
            "activations",
            "every conv layer's feature maps for the current digit",
        ),
        PageSpec(
            "units",
            "What each unit does",
            "views/units.py",
            ":material/neurology:",
            "units",
            "one channel's kernel, favourite test digits, arithmetic, and switching channels off",
        ),
        PageSpec(
            "attributions",
            "Grad-CAM & attributions",
            "views/attributions.py",
            ":material/visibility:",
            "attributions",
            "why a model decided, and whether the explanation depends on its weights",
        ),
        PageSpec(
            "compare",
            "Compare architectures",
            "views/compare.py",
            ":material/compare:",
            "compare",
            "the models side by side on the current digit and the test set",
        ),
        PageSpec(
            "errors",
            "Error browser",
            "views/errors.py",
            ":material/bug_report:",
            "errors",
            "the test-set mistakes: confusion matrix and gallery",
        ),
        PageSpec(
            "embedding",
            "Embedding & neighbours",
            "views/embedding.py",
            ":material/scatter_plot:",
            "embedding",
            "where a digit lies among the others: feature map, neighbours, what flips the answer",
        ),
        PageSpec(
            "rejection",
            "Rejection & OOD",
            "views/rejection.py",
            ":material/block:",
            "rejection",
            "when not to answer: threshold, out-of-distribution input, calibration",
        ),
    )
}


def page_link(key: str, label: str | None = None) -> None:
    """A link to the page ``key`` (its title and icon unless ``label`` is given)."""
    spec = PAGES[key]
    st.page_link(spec.file, label=label or spec.title, icon=spec.icon)


def _warm_up() -> None:
    """The server loads PyTorch and the models when it starts (``dashboard/warmup.py``); a
    visitor who arrives before that has finished sees a progress box while it completes. Later
    runs skip this in microseconds."""
    if warmup.ready():
        return
    notice = st.empty()
    with notice.container(), st.status("Starting digit-lens…", expanded=True) as status:
        st.write("Loading PyTorch and the models (once per server start)…")
        warmup.warm_up()
        status.update(label="Ready", state="complete")
    notice.empty()


def run() -> None:
    """Set up the app and run the page the user chose (the entry point's only job)."""
    st.set_page_config(page_title="digit-lens", page_icon=":material/draw:", layout="wide")
    _warm_up()
    from dashboard import links

    links.apply_once()
    links.update()
    pages = [
        st.Page(
            spec.file,
            title=spec.title,
            icon=spec.icon,
            url_path=spec.url_path,
            default=index == 0,
        )
        for index, spec in enumerate(PAGES.values())
    ]
    current = st.navigation(pages)
    phone.close_sidebar_after_navigation(current.url_path)
    current.run()
