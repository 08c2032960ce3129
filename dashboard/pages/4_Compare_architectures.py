"""cnn1, cnn2 and cnn3 side by side on the current digit, and their test-set metrics."""

import pandas as pd
import streamlit as st

from dashboard import figures, ui

ui.page_setup("Compare architectures")

with ui.guard():
    pred = ui.predictor()
    variants = ui.predictor_variants()
    current = ui.require_input()
    probs = ui.probabilities(current.image)
    digits = {v: int(probs[v].argmax()) for v in variants}

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

    columns = st.columns(len(variants))
    for col, variant in zip(columns, variants, strict=True):
        p = probs[variant]
        top = ui.top_k(p)
        majority = max(set(digits.values()), key=list(digits.values()).count)
        with col, st.container(border=True):
            st.subheader(ui.model_label(variant))
            st.metric(
                "prediction",
                top[0][0],
                f"{top[0][1]:.1%} confident"
                + (" · below the threshold" if top[0][1] < ui.threshold() else ""),
                delta_color="normal" if digits[variant] == majority else "inverse",
                delta_arrow="off",
            )
            st.plotly_chart(
                figures.probability_figure({variant: p}, threshold=ui.threshold(), height=200),
                key=f"dl.cmp.bars.{variant}",
            )
            st.caption(" · ".join(f"{d}: {q:.1%}" for d, q in top))
            layer = ui.last_conv_layer(variant)
            heat = ui.attribution(current.image, variant, "gradcam", top[0][0], layer)
            st.plotly_chart(
                figures.overlay_figure(current.image, heat, f"Grad-CAM · {layer}", height=240),
                key=f"dl.cmp.cam.{variant}",
            )
            st.caption(
                f"forward pass: {ui.forward_latency_ms(variant, current.image):.2f} ms "
                f"(median of 7, measured now) · {pred.metadata[variant]['params']:,} parameters"
            )

    st.header("Test-set metrics")
    st.dataframe(
        pd.DataFrame([ui.metrics_row(v) for v in variants]),
        hide_index=True,
        column_config=ui.METRICS_COLUMNS,
    )
    aurocs = [ui.auroc_row(v) for v in variants]
    if any(len(row) > 1 for row in aurocs):
        st.subheader("Out-of-distribution detection (AUROC of the max softmax probability)")
        st.dataframe(pd.DataFrame(aurocs), hide_index=True, column_config=ui.AUROC_COLUMNS)
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
