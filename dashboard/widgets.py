"""Widgets shared between pages: the model pickers and the rejection threshold.

Their values survive page switches: Streamlit forgets a widget's state when a page without it
runs, so each value lives under a plain session-state key (:func:`_persisted_widget`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.models import REGISTRY
from dashboard import loaders

THRESHOLD_KEY = "dl.threshold"
MODEL_KEY = "dl.model"
MODELS_KEY = "dl.models"
# With the shipped models this keeps 95-98% of MNIST test digits (at 99.95-99.98% accuracy) and
# rejects 86-93% of Fashion-MNIST and 72-75% of scribbles; see the Rejection & OOD page.
DEFAULT_THRESHOLD = 0.7


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


def threshold_slider(*, sidebar: bool = False) -> float:
    """The rejection threshold, shared by the Draw and the Rejection pages."""
    target = st.sidebar if sidebar else st
    return float(
        _persisted_widget(
            target.slider,
            THRESHOLD_KEY,
            DEFAULT_THRESHOLD,
            label="Rejection threshold (minimum confidence)",
            min_value=0.0,
            max_value=1.0,
            step=0.01,
            help="Predictions whose top probability is below this are answered with "
            "“not sure / not a digit”. The same threshold is used on the Rejection page.",
        )
    )


def threshold() -> float:
    """The shared rejection threshold, for pages that use it without showing the slider."""
    return float(st.session_state.get(THRESHOLD_KEY, DEFAULT_THRESHOLD))


def model_picker(label: str = "Model") -> str:
    """One model for pages that inspect a single model (sidebar, shared between pages)."""
    variants = loaders.loaded_variants()
    stored = st.session_state.get(MODEL_KEY)
    if stored not in variants:
        st.session_state.pop(MODEL_KEY, None)
    return _persisted_widget(
        st.sidebar.selectbox,
        MODEL_KEY,
        variants[-1],
        label=label,
        options=variants,
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
