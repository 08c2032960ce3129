"""The test-set mistakes of a model: confusion matrix, per-class table, gallery of one cell or the
most confident mistakes, each image with its probabilities and (on demand) its Grad-CAM."""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.data import DataUnavailableError
from core.evaluate import confusion_matrix, per_class_report
from dashboard import charts, images, loaders, results, shell, state, widgets

# The chosen confusion-matrix cell, shared by the Plotly selection and the selectboxes.
ERR_TRUE_KEY = "dl.err.true"
ERR_PRED_KEY = "dl.err.pred"
ERR_VIEW_KEY = "dl.err.view"
ERR_ANY = "any"
ERR_CELL_VIEW = "Chosen cell or class"
ERR_CONFIDENT_VIEW = "Most confident mistakes"


def selected_cell() -> tuple[int, int] | None:
    """(true, predicted) chosen in the Error browser, when both are single digits."""
    true, pred = st.session_state.get(ERR_TRUE_KEY), st.session_state.get(ERR_PRED_KEY)
    return (true, pred) if isinstance(true, int) and isinstance(pred, int) else None


def apply_cell_selection(point: Mapping[str, Any] | None) -> None:
    """A clicked confusion-matrix cell becomes the selectboxes' choice (before they render).

    An off-diagonal cell selects (true, predicted); a diagonal cell selects the whole class
    (every mistake on that true digit), since the cell itself holds no mistakes.
    """
    if not point:
        return
    try:
        true, pred = round(float(point["y"])), round(float(point["x"]))
    except (KeyError, TypeError, ValueError):
        return
    if true in charts.DIGITS and pred in charts.DIGITS:
        st.session_state[ERR_TRUE_KEY] = true
        st.session_state[ERR_PRED_KEY] = ERR_ANY if pred == true else pred
        st.session_state[ERR_VIEW_KEY] = ERR_CELL_VIEW


GALLERY_SIZE = 30

shell.page_setup("errors")

with shell.guard():
    variant = widgets.model_picker()
    evaluation = loaders.eval_file(variant)
    probabilities, labels = evaluation.calibrated_probabilities, evaluation.labels
    predictions, confidence = evaluation.predictions, probabilities.max(axis=1)
    matrix = confusion_matrix(labels, predictions)
    errors = int((predictions != labels).sum())
    st.caption(
        f"{widgets.model_label(variant)}: {errors} mistake{'s' if errors != 1 else ''} on {len(labels):,} MNIST test images "
        f"({1 - errors / len(labels):.2%} accuracy). Click a cell of the matrix or choose one below."
    )

    matrix_col, table_col = st.columns([1, 1], gap="large")
    with matrix_col:
        matrix_key = f"dl.err.matrix.{variant}"
        apply_cell_selection(widgets.selected_point(st.session_state.get(matrix_key)))
        st.plotly_chart(
            charts.confusion_figure(matrix, selected_cell()),
            key=matrix_key,
            on_select="rerun",
            selection_mode="points",
            config={"displayModeBar": False},
        )
    with table_col:
        report = pd.DataFrame(per_class_report(matrix)).rename(columns={"class": "digit"})
        st.dataframe(
            report,
            hide_index=True,
            column_config={
                "digit": st.column_config.NumberColumn(width="small"),
                "precision": st.column_config.NumberColumn(format="percent"),
                "recall": st.column_config.ProgressColumn(
                    "recall (accuracy)", format="percent", min_value=0.9, max_value=1.0
                ),
                "f1": st.column_config.NumberColumn("F1", format="percent", width="small"),
                "support": st.column_config.NumberColumn(width="small"),
            },
        )
        st.caption("Per-class precision, recall and F1 (recall bars start at 90%).")

    st.header("Mistakes")
    st.session_state.setdefault(ERR_VIEW_KEY, ERR_CELL_VIEW)
    view = st.segmented_control(
        "Show",
        [ERR_CELL_VIEW, ERR_CONFIDENT_VIEW],
        required=True,
        key=ERR_VIEW_KEY,
    )
    mistakes = predictions != labels
    if view == ERR_CONFIDENT_VIEW:
        chosen = np.flatnonzero(mistakes)
        title = "the most confident mistakes"
    else:
        true_col, pred_col = st.columns(2)
        true_digit = true_col.selectbox("True digit", [ERR_ANY, *charts.DIGITS], key=ERR_TRUE_KEY)
        pred_digit = pred_col.selectbox("Predicted as", [ERR_ANY, *charts.DIGITS], key=ERR_PRED_KEY)
        mask = mistakes.copy()
        if true_digit != ERR_ANY:
            mask &= labels == true_digit
        if pred_digit != ERR_ANY:
            mask &= predictions == pred_digit
        chosen = np.flatnonzero(mask)
        title = (
            ", ".join(
                part
                for part, chosen_digit in (
                    (f"true digit {true_digit}", true_digit),
                    (f"predicted as {pred_digit}", pred_digit),
                )
                if chosen_digit != ERR_ANY
            )
            or "all classes"
        )
    chosen = chosen[np.argsort(-confidence[chosen], kind="stable")]

    if not len(chosen):
        st.info(f"No mistakes for {title}: every such test image is classified correctly.")
        st.stop()
    shown = chosen[:GALLERY_SIZE]
    st.markdown(
        f"**{len(chosen)} mistakes** for {title}, most confident first"
        + (f" (showing {len(shown)})." if len(shown) < len(chosen) else ".")
    )
    layer = results.last_conv_layer(variant)
    overlay = "Grad-CAM (last conv layer" if layer else "Saliency (no conv layer"
    with_cam = st.toggle(f"Overlay {overlay}, predicted class)", key="dl.err.cam")

    try:
        test_images, test_labels = loaders.mnist_test()
    except DataUnavailableError as error:
        st.info(
            f"**The test images are not available here**, so the gallery cannot be shown. "
            f"{shell.escape_markdown(error)}",
            icon=":material/cloud_off:",
        )
        test_images = None
    if test_images is not None and not np.array_equal(test_labels[: len(labels)], labels):
        st.error(
            "The evaluation file does not match the MNIST test set on this machine (labels "
            "differ); re-run `python scripts/evaluate_all.py`."
        )
        test_images = None
    if test_images is not None:
        inspect_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
        picked = inspect_col.selectbox(
            "Inspect one of them on the other pages",
            shown,
            format_func=lambda i: f"test image #{i}: true {labels[i]}, predicted {predictions[i]}",
            key="dl.err.inspect",
        )

        def use_picked(index: int = int(picked)) -> None:
            state.set_current_input(
                state.CurrentInput.from_image(
                    test_images[index],
                    "sample",
                    f"MNIST test image #{index}",
                    label=int(test_labels[index]),
                    test_index=index,
                )
            )
            st.toast(f"Test image #{index} is now the current digit on every page.")

        button_col.button("Make it the current digit", key="dl.err.use", on_click=use_picked)
        pictures = []
        for index in shown:
            image = test_images[index].astype(np.float32) / 255.0
            if with_cam:
                method = "gradcam" if layer else "saliency"
                heat = results.attribution(image, variant, method, int(predictions[index]), layer)
                pictures.append(images.overlay_pixels(image, heat))
            else:
                pictures.append(images.to_pixels(image))
        st.image(
            pictures,
            caption=[f"#{i}: {labels[i]} → {predictions[i]} ({confidence[i]:.0%})" for i in shown],
            width=images.PREVIEW_PIXELS,
        )

    table = pd.DataFrame(
        {
            "test image": shown,
            "true": labels[shown],
            "predicted": predictions[shown],
            "confidence": confidence[shown],
            **{f"p({d})": probabilities[shown, d] for d in charts.DIGITS},
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "confidence": st.column_config.ProgressColumn(
                format="percent", min_value=0.0, max_value=1.0
            ),
            **{f"p({d})": st.column_config.NumberColumn(format="%.3f") for d in charts.DIGITS},
        },
    )

    # --- Issue 15: the inspected mistake's nearest training digits (dashboard/embedding_results) ---
    from dashboard import embedding_results

    embedding_results.mistake_neighbours(
        variant, int(picked) if test_images is not None else int(shown[0])
    )
    # --- end of issue 15 ---
