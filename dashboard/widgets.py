"""Widgets shared between pages: the model pickers and the rejection operating point.

Their values survive page switches: Streamlit forgets a widget's state when a page without it
runs, so each value lives under a plain session-state key (:func:`_persisted_widget`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.checkpoints import CheckpointError
from core.models import REGISTRY
from core.selective import DEFAULT_KEEP
from dashboard import loaders

KEEP_KEY = "dl.keep"
MODEL_KEY = "dl.model"
MODELS_KEY = "dl.models"


def _persisted_widget(widget: Any, key: str, default: Any, **kwargs: Any) -> Any:
    """Render ``widget`` with a value stored under ``key``, shared by every page that shows it.

    Streamlit ties a widget's state to the widget on one page and forgets it when a page without
    it runs, so the value lives under a plain key; it is written into the widget's own key
    (``<key>.widget``) before every render and copied back when the user changes it.
    """
    widget_key = f"{key}.widget"
    st.session_state.setdefault(key, default)
    st.session_state[widget_key] = st.session_state[key]

    def store() -> None:
        st.session_state[key] = st.session_state[widget_key]

    value = widget(key=widget_key, on_change=store, **kwargs)
    st.session_state[key] = value
    return value


def keep_slider(*, sidebar: bool = False) -> float:
    """The rejection operating point as the share of real digits kept, shared by every page.

    The same share means the same for every model (each has its own threshold that keeps it on
    its validation digits); 100% switches rejection off.
    """
    target = st.sidebar if sidebar else st
    percent = _persisted_widget(
        target.slider,
        KEEP_KEY,
        round(100 * DEFAULT_KEEP, 2),
        label="Real digits kept (rejection operating point)",
        min_value=80.0,
        max_value=100.0,
        step=0.25,
        format="%.2f%%",
        help="Each model rejects (“not a digit, or too unsure”) what it is less confident about "
        "than the least confident digits it keeps: at 98%, it keeps 98% of real digits on its "
        "validation set and turns away everything less digit-like. 100% rejects nothing. The "
        "equivalent calibrated-confidence threshold of each model is shown beside it.",
    )
    return float(percent) / 100.0


def keep() -> float:
    """The shared operating point (share of real digits kept), for pages without the slider."""
    return float(st.session_state.get(KEEP_KEY, round(100 * DEFAULT_KEEP, 2))) / 100.0


def default_model(variants: list[str]) -> str:
    """The model a page starts with: the deepest CNN that loaded, else the first model."""
    cnns = [v for v in variants if v in REGISTRY and REGISTRY[v].conv_blocks]
    return max(cnns, key=lambda v: REGISTRY[v].conv_blocks) if cnns else variants[0]


def model_picker(label: str = "Model", conv_only: bool = False) -> str:
    """One model for pages that inspect a single model (sidebar, shared between pages).

    ``conv_only`` pages (feature maps, Grad-CAM) offer only the CNNs; if the shared choice is a
    model without conv layers, the page says so and shows the deepest CNN instead.
    """
    variants = loaders.loaded_variants()
    options = [v for v in variants if REGISTRY[v].conv_blocks] if conv_only else variants
    if not options:
        raise CheckpointError("This page needs a CNN, and no CNN checkpoint could be loaded.")
    stored = st.session_state.get(MODEL_KEY)
    if conv_only and stored in variants and stored not in options:
        st.info(
            f"**{model_label(stored)}** has no conv layers, so it has no feature maps or "
            f"Grad-CAM: showing {model_label(default_model(options))} instead. Its pixel "
            "attributions are on the Grad-CAM & attributions page.",
            icon=":material/info:",
        )
    if stored not in options:
        st.session_state.pop(MODEL_KEY, None)
    return _persisted_widget(
        st.sidebar.selectbox,
        MODEL_KEY,
        default_model(options),
        label=label,
        options=options,
        format_func=model_label,
    )


def models_picker() -> list[str]:
    """Several models at once (Draw page), shared between visits."""
    variants = loaders.loaded_variants()
    stored = st.session_state.get(MODELS_KEY)
    if stored is not None and not set(stored) <= set(variants):
        st.session_state.pop(MODELS_KEY, None)
    return list(
        _persisted_widget(
            st.multiselect,
            MODELS_KEY,
            list(variants),
            label="Models",
            options=variants,
            format_func=model_label,
        )
    )


def model_label(variant: str) -> str:
    """The variant's label from the registry (``cnn2 · 2 conv blocks``)."""
    return REGISTRY[variant].label if variant in REGISTRY else variant


def selected_point(event: Any) -> dict[str, Any] | None:
    """The first selected point of a ``st.plotly_chart(on_select="rerun")`` event, if any."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    return dict(points[0]) if points else None
