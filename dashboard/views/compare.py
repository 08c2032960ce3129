"""The models side by side on the current digit, and their test-set metrics."""

import pandas as pd
import streamlit as st

from dashboard import charts, images, loaders, results, shell, state, tables, widgets

shell.page_setup("compare")

with shell.guard():
    pred = loaders.predictor()
    variants = loaders.loaded_variants()
    current = state.require_input()
    threshold = widgets.threshold()
    predictions = results.predictions(current.image, threshold)
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
                f"{prediction.confidence:.1%} confident"
                + (" · below the threshold" if prediction.rejected else ""),
                delta_color="normal" if digits[variant] == majority else "inverse",
                delta_arrow="off",
            )
            st.plotly_chart(
                charts.probability_figure(
                    {variant: prediction.probabilities}, threshold=threshold, height=200
                ),
                key=f"dl.cmp.bars.{variant}",
            )
            st.caption(" · ".join(f"{d}: {q:.1%}" for d, q in prediction.top3))
            layer = results.last_conv_layer(variant)
            heat = results.attribution(current.image, variant, "gradcam", prediction.digit, layer)
            st.plotly_chart(
                images.overlay_figure(current.image, heat, f"Grad-CAM · {layer}", height=240),
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
