"""The test-set mistakes of a model: confusion matrix, per-class table, gallery of one cell or the
most confident mistakes, each image with its probabilities and (on demand) its Grad-CAM."""

import numpy as np
import pandas as pd
import streamlit as st

from core.data import DataUnavailableError
from core.evaluate import confusion_matrix, per_class_report
from dashboard import figures, ui

GALLERY_SIZE = 30

ui.page_setup("Error browser")

with ui.guard():
    variant = ui.model_picker()
    arrays = ui.eval_arrays(variant)
    probabilities, labels = arrays["probabilities"], arrays["labels"]
    predictions = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    matrix = confusion_matrix(labels, predictions)
    errors = int((predictions != labels).sum())
    st.caption(
        f"{ui.model_label(variant)}: {errors} mistakes on {len(labels):,} MNIST test images "
        f"({1 - errors / len(labels):.2%} accuracy). Click a cell of the matrix or choose one below."
    )

    matrix_col, table_col = st.columns([1, 1], gap="large")
    with matrix_col:
        matrix_key = f"dl.err.matrix.{variant}"
        ui.apply_cell_selection(ui.selected_point(st.session_state.get(matrix_key)))
        st.plotly_chart(
            figures.confusion_figure(matrix, ui.selected_cell()),
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
    st.session_state.setdefault(ui.ERR_VIEW_KEY, ui.ERR_CELL_VIEW)
    view = st.segmented_control(
        "Show",
        [ui.ERR_CELL_VIEW, ui.ERR_CONFIDENT_VIEW],
        required=True,
        key=ui.ERR_VIEW_KEY,
    )
    mistakes = predictions != labels
    if view == ui.ERR_CONFIDENT_VIEW:
        chosen = np.flatnonzero(mistakes)
        title = "the most confident mistakes"
    else:
        true_col, pred_col = st.columns(2)
        true_digit = true_col.selectbox(
            "True digit", [ui.ERR_ANY, *figures.DIGITS], key=ui.ERR_TRUE_KEY
        )
        pred_digit = pred_col.selectbox(
            "Predicted as", [ui.ERR_ANY, *figures.DIGITS], key=ui.ERR_PRED_KEY
        )
        mask = mistakes.copy()
        if true_digit != ui.ERR_ANY:
            mask &= labels == true_digit
        if pred_digit != ui.ERR_ANY:
            mask &= predictions == pred_digit
        chosen = np.flatnonzero(mask)
        title = (
            ", ".join(
                part
                for part, chosen_digit in (
                    (f"true digit {true_digit}", true_digit),
                    (f"predicted as {pred_digit}", pred_digit),
                )
                if chosen_digit != ui.ERR_ANY
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
    with_cam = st.toggle("Overlay Grad-CAM (last conv layer, predicted class)", key="dl.err.cam")

    try:
        images, test_labels = ui.mnist_test()
    except DataUnavailableError as error:
        st.info(
            f"**The test images are not available here**, so the gallery cannot be shown. "
            f"{ui.escape_markdown(error)}",
            icon=":material/cloud_off:",
        )
        images = None
    if images is not None and not np.array_equal(test_labels[: len(labels)], labels):
        st.error(
            "The evaluation file does not match the MNIST test set on this machine (labels "
            "differ); re-run `python scripts/evaluate_all.py`."
        )
        images = None
    if images is not None:
        inspect_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
        picked = inspect_col.selectbox(
            "Inspect one of them on the other pages",
            shown,
            format_func=lambda i: f"test image #{i}: true {labels[i]}, predicted {predictions[i]}",
            key="dl.err.inspect",
        )
        if button_col.button("Make it the current digit", key="dl.err.use"):
            ui.set_current_input(
                ui.CurrentInput.from_image(images[picked], "sample", f"MNIST test image #{picked}")
            )
            st.toast(f"Test image #{picked} is now the current digit on every page.")
        layer = ui.last_conv_layer(variant)
        pictures = []
        for index in shown:
            image = images[index].astype(np.float32) / 255.0
            if with_cam:
                heat = ui.attribution(image, variant, "gradcam", int(predictions[index]), layer)
                pictures.append(figures.overlay_pixels(image, heat))
            else:
                pictures.append(figures.to_pixels(image))
        st.image(
            pictures,
            caption=[f"#{i}: {labels[i]} → {predictions[i]} ({confidence[i]:.0%})" for i in shown],
            width=figures.PREVIEW_PIXELS,
        )

    table = pd.DataFrame(
        {
            "test image": shown,
            "true": labels[shown],
            "predicted": predictions[shown],
            "confidence": confidence[shown],
            **{f"p({d})": probabilities[shown, d] for d in figures.DIGITS},
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "confidence": st.column_config.ProgressColumn(
                format="percent", min_value=0.0, max_value=1.0
            ),
            **{f"p({d})": st.column_config.NumberColumn(format="%.3f") for d in figures.DIGITS},
        },
    )
