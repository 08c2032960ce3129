"""Links that reproduce a view: the page, model, operating point and test digit in the URL.

A teacher can share ``…/attributions?model=cnn2&keep=97.5&test=1234``: the page comes from the
URL path (``st.navigation``), the rest from query parameters, applied once when a session starts
and kept up to date as the user changes them.
"""

from __future__ import annotations

import math

import streamlit as st

from core.data import DataUnavailableError
from core.models import VARIANTS
from dashboard import loaders, state, widgets

APPLIED_KEY = "dl.link.applied"


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def apply_once() -> None:
    """Take the model, operating point and test digit from the URL on a session's first run.

    Values that do not make sense are ignored (a link never breaks a page); a test digit that
    cannot be loaded (no MNIST here) is reported once.
    """
    if st.session_state.get(APPLIED_KEY):
        return
    st.session_state[APPLIED_KEY] = True
    params = st.query_params
    model = params.get("model")
    if model in VARIANTS:
        st.session_state[widgets.MODEL_KEY] = model
    keep = _float(params.get("keep"))
    if keep is not None and 80.0 <= keep <= 100.0:
        st.session_state[widgets.KEEP_KEY] = round(keep * 4) / 4
    index = _float(params.get("test"))
    if index is not None and index == int(index):
        try:
            images, labels = loaders.mnist_test()
        except DataUnavailableError:
            st.toast("This link names a test digit, but the MNIST test set is not available here.")
            return
        if 0 <= int(index) < len(images):
            i = int(index)
            state.set_current_input(
                state.CurrentInput.from_image(
                    images[i], "sample", f"MNIST test image #{i}", int(labels[i]), i
                )
            )


def update() -> None:
    """Write the current model, operating point and test digit into the URL."""
    wanted: dict[str, str] = {}
    model = st.session_state.get(widgets.MODEL_KEY)
    if model in VARIANTS:
        wanted["model"] = model
    keep = st.session_state.get(widgets.KEEP_KEY)
    if isinstance(keep, int | float):
        wanted["keep"] = f"{keep:g}"
    current = state.current_input()
    if current is not None and current.test_index is not None:
        wanted["test"] = str(current.test_index)
    for key in ("model", "keep", "test"):
        if key in wanted and st.query_params.get(key) != wanted[key]:
            st.query_params[key] = wanted[key]
        elif key not in wanted and key in st.query_params:
            del st.query_params[key]
