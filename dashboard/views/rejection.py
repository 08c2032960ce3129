"""A confidence threshold: how many real digits it keeps, how accurate they are, how much
out-of-distribution input (clothing, noise, letters, scribbles) it turns away."""

import pandas as pd
import streamlit as st

from core.ood import OOD_LABELS
from core.selective import is_rejected, risk_coverage, selective_summary
from dashboard import charts, images, loaders, results, shell, tables, widgets

EXAMPLES = 10

shell.page_setup("rejection")

with shell.guard():
    variant = widgets.model_picker()
    threshold = widgets.threshold_slider()
    evaluation = loaders.eval_file(variant)
    summary = selective_summary(evaluation.probabilities, evaluation.labels, threshold)

    accepted, accuracy, overall = st.columns(3)
    accepted.metric(
        "MNIST test digits accepted",
        f"{summary.coverage:.1%}",
        f"{summary.accepted:,} of {summary.total:,}",
        delta_color="off",
        delta_arrow="off",
    )
    accuracy.metric(
        "accuracy of the accepted",
        f"{summary.accuracy:.2%}" if summary.accepted else "–",
        f"{summary.errors_avoided} of {summary.errors} mistakes rejected",
        delta_color="off",
        delta_arrow="off",
    )
    overall.metric("accuracy without rejection", f"{summary.overall_accuracy:.2%}")
    st.caption(
        f"{widgets.model_label(variant)}: a prediction is accepted when its maximum softmax "
        f"probability is at least {threshold:.0%}. The same threshold applies on the Draw page."
    )

    ood = results.ood_scores(variant)
    if ood:
        st.subheader("Out-of-distribution input rejected at this threshold")
        st.dataframe(
            pd.DataFrame(tables.ood_table(ood, threshold)),
            hide_index=True,
            column_config=tables.OOD_COLUMNS,
        )
        st.caption(
            f"For comparison, {1 - summary.coverage:.2%} of MNIST test digits are rejected. "
            "AUROC: how well the score separates MNIST test digits from that set (1 = perfectly, "
            "0.5 = not at all), independent of the threshold. Energy is logsumexp of the logits."
        )
    else:
        st.info(
            "This checkpoint's evaluation file holds no out-of-distribution scores: run "
            "`python scripts/evaluate_all.py` to compute them.",
            icon=":material/info:",
        )

    curve = evaluation.risk_coverage or risk_coverage(evaluation.probabilities, evaluation.labels)
    hist_col, curve_col = st.columns(2)
    with hist_col:
        st.plotly_chart(
            charts.confidence_histogram(
                evaluation.confidence, {k: v.scores["msp"] for k, v in ood.items()}, threshold
            ),
            key="dl.rej.hist",
        )
    with curve_col:
        st.plotly_chart(
            charts.risk_coverage_figure(
                curve,
                threshold,
                (summary.coverage, summary.accuracy) if summary.accepted else None,
            ),
            key="dl.rej.curve",
        )

    if ood:
        st.subheader("What the model says to them")
        st.caption(
            f"A few images of each set: predicted digit, confidence, and the verdict at "
            f"{threshold:.0%}. Everything accepted here would be shown to a user as a digit."
        )
        for name, entry in ood.items():
            examples = evaluation.ood[name].examples
            shown = min(EXAMPLES, len(examples))
            msp = entry.scores["msp"]
            st.markdown(f"**{OOD_LABELS.get(name, name)}**")
            st.image(
                [images.to_pixels(image, 72) for image in examples[:shown]],
                caption=[
                    f"{entry.prediction[i]} · {msp[i]:.0%} · "
                    + ("rejected" if is_rejected(msp[i], threshold) else "ACCEPTED")
                    for i in range(shown)
                ],
                width=72,
            )

    if evaluation.reliability_before is not None and evaluation.reliability_after is not None:
        st.subheader("Calibration")
        meta = loaders.model_and_metadata(variant)[1]
        ece, ece_scaled, temp = st.columns(3)
        ece.metric("ECE", f"{meta.get('test_ece', float('nan')):.4f}")
        ece_scaled.metric(
            "ECE after temperature scaling", f"{meta.get('test_ece_scaled', float('nan')):.4f}"
        )
        temp.metric("temperature (fitted on validation)", f"{evaluation.temperature:.3f}")
        st.plotly_chart(
            charts.reliability_figure(
                evaluation.reliability_before.as_dict(), evaluation.reliability_after.as_dict()
            ),
            key="dl.rej.reliability",
        )
