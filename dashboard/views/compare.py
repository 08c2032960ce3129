"""The models side by side on the current digit, and their test-set metrics."""

import pandas as pd
import streamlit as st

from core.methods import METHODS
from core.predict import format_percent
from dashboard import charts, curves, images, loaders, results, shell, state, tables, widgets

shell.page_setup("compare")

with shell.guard():
    pred = loaders.predictor()
    variants = loaders.loaded_variants()
    current = state.require_input()
    keep = widgets.keep()
    predictions = results.predictions(current.image, keep)
    digits = {v: predictions[v].digit for v in variants}

    if len(set(digits.values())) == 1:
        st.success(
            f"All {len(variants)} models agree: **{next(iter(digits.values()))}**.",
            icon=":material/check_circle:",
        )
    else:
        st.warning(
            "**The models disagree:** "
            + ", ".join(f"{v} says {d}" for v, d in digits.items())
            + ".",
            icon=":material/call_split:",
        )
    st.caption(f"Input: {current.describe()}.")

    majority = max(set(digits.values()), key=list(digits.values()).count)
    columns = st.columns(len(variants))
    for col, variant in zip(columns, variants, strict=True):
        prediction = predictions[variant]
        with col, st.container(border=True):
            st.subheader(widgets.model_label(variant))
            st.metric(
                "prediction",
                prediction.digit,
                f"{format_percent(prediction.confidence)} confident"
                + (" · not a digit, or too unsure" if prediction.rejected else ""),
                delta_color="normal" if digits[variant] == majority else "inverse",
                delta_arrow="off",
            )
            st.plotly_chart(
                charts.probability_figure(
                    {variant: prediction.probabilities},
                    threshold=prediction.threshold or None,
                    height=200,
                ),
                key=f"dl.cmp.bars.{variant}",
            )
            st.caption(" · ".join(f"{d}: {q:.1%}" for d, q in prediction.top3))
            layer = results.last_conv_layer(variant)
            method = METHODS["gradcam" if layer else "integrated_gradients"]
            heat = results.attribution(current.image, variant, method.key, prediction.digit, layer)
            title = f"{method.label} · {layer}" if layer else f"{method.label} (no conv layer)"
            st.plotly_chart(
                images.overlay_figure(current.image, heat, title, height=240, signed=method.signed),
                key=f"dl.cmp.cam.{variant}",
            )
            st.caption(
                f"forward pass: {results.forward_latency_ms(variant, current.image):.2f} ms "
                f"(median of 7, measured now) · {pred.metadata[variant]['params']:,} parameters"
            )

    st.header("Test-set metrics")
    st.dataframe(
        pd.DataFrame([tables.metrics_row(v) for v in variants]),
        hide_index=True,
        column_config=tables.METRICS_COLUMNS,
    )
    aurocs = [tables.auroc_row(v) for v in variants]
    if any(len(row) > 1 for row in aurocs):
        st.subheader("Out-of-distribution detection (AUROC of the max softmax probability)")
        st.dataframe(pd.DataFrame(aurocs), hide_index=True, column_config=tables.AUROC_COLUMNS)
        st.caption(
            "1 = the confidence separates MNIST test digits from that input perfectly, "
            "0.5 = not at all. Details on the Rejection & OOD page."
        )
    robustness = loaders.robustness_table()
    if robustness:
        st.subheader("What convolution buys: shifted and rotated digits")
        st.plotly_chart(
            curves.robustness_figure(
                robustness, {v: charts.model_colour(v) for v in robustness["models"]}
            ),
            key="dl.cmp.robustness",
        )
        st.dataframe(
            pd.DataFrame(tables.robustness_rows(robustness)),
            hide_index=True,
            column_config=tables.ROBUSTNESS_COLUMNS,
        )
        st.caption(
            f"All {robustness['test_images']:,} MNIST test digits moved 0-6 pixels (each in its "
            "own compass direction) or rotated 0-30 degrees, and "
            f"{robustness['canvas_images']:,} re-drawn the way people draw on the canvas "
            "(`scripts/robustness.py`). logreg and mlp see 784 unrelated pixels: a digit moved "
            "by a few pixels is a new pattern to them; the CNNs' shared kernels and pooling carry "
            "it along."
        )
    st.subheader("Per-class accuracy (recall)")
    per_class = pd.DataFrame(
        [
            {str(row["class"]): row["recall"] for row in pred.metadata[v]["per_class"]}
            for v in variants
        ],
        index=pd.Index(variants, name="model"),
    )
    st.dataframe(per_class.style.format("{:.2%}").highlight_min(axis=1, color="#fde2e2"))
    st.caption("Each model's weakest digit is highlighted.")
