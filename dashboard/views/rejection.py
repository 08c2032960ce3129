"""The rejection operating point: how many real digits it keeps, how accurate they are, how much
that is not a digit (clothing, noise, letters, shapes, scribbles) it turns away, and calibration."""

import pandas as pd
import streamlit as st

from core.ood import OOD_LABELS, msp_score
from core.predict import format_percent
from core.selective import is_rejected, risk_coverage, selective_summary
from dashboard import charts, curves, images, loaders, results, shell, tables, widgets

EXAMPLES = 10

shell.page_setup("rejection")

with shell.guard():
    variant = widgets.model_picker()
    keep = widgets.keep_slider()
    evaluation = loaders.eval_file(variant)
    threshold = loaders.predictor().threshold_for(variant, keep)
    calibrated = evaluation.calibrated_probabilities
    summary = selective_summary(calibrated, evaluation.labels, threshold)

    accepted, accuracy, canvas_col, overall = st.columns(4)
    accepted.metric(
        "MNIST test digits kept",
        f"{summary.coverage:.2%}",
        f"{summary.accepted:,} of {summary.total:,}",
        delta_color="off",
        delta_arrow="off",
    )
    accuracy.metric(
        "accuracy of the kept",
        f"{summary.accuracy:.2%}" if summary.accepted else "–",
        f"{summary.errors_avoided} of {summary.errors} mistakes rejected",
        delta_color="off",
        delta_arrow="off",
    )
    if evaluation.canvas_logits is not None and evaluation.canvas_labels is not None:
        canvas_scores = msp_score(evaluation.canvas_logits, evaluation.temperature)
        canvas_kept = float((~is_rejected(canvas_scores, threshold)).mean())
        canvas_col.metric(
            "canvas-drawn digits kept",
            f"{canvas_kept:.1%}",
            f"{len(canvas_scores):,} test digits re-drawn",
            delta_color="off",
            delta_arrow="off",
        )
    overall.metric("accuracy without rejection", f"{summary.overall_accuracy:.2%}")
    st.caption(
        f"{widgets.model_label(variant)}: "
        + (
            "rejection is off (100% kept)."
            if threshold <= 0
            else f"keeping {keep:.2%} of real digits (validation split) means a calibrated "
            f"confidence of at least {format_percent(threshold)}. The same operating point applies on "
            "every page and means the same share for every model."
        )
    )

    ood = results.ood_scores(variant)
    if ood:
        st.subheader("What is not a digit, turned away at this operating point")
        st.dataframe(
            pd.DataFrame(tables.ood_table(ood, threshold)),
            hide_index=True,
            column_config=tables.OOD_COLUMNS,
        )
        st.caption(
            f"For comparison, {1 - summary.coverage:.2%} of MNIST test digits are rejected. "
            "AUROC: how well the score separates MNIST test digits from that set (1 = perfectly, "
            "0.5 = not at all), independent of the operating point. MSP is the calibrated top "
            "probability; energy is logsumexp of the logits. Drawn letters and shapes use "
            "templates, and letters fonts, that training never saw."
        )
    else:
        st.info(
            "This checkpoint's evaluation file holds no out-of-distribution scores: run "
            "`python scripts/evaluate_all.py` to compute them.",
            icon=":material/info:",
        )

    curve = evaluation.risk_coverage or risk_coverage(calibrated, evaluation.labels)
    hist_col, curve_col = st.columns(2)
    with hist_col:
        st.plotly_chart(
            charts.confidence_histogram(
                calibrated.max(axis=1), {k: v.scores["msp"] for k, v in ood.items()}, threshold
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
            "A few images of each set: predicted digit, calibrated confidence, and the verdict "
            "at this operating point. Everything accepted here would be shown to a user as a "
            "digit."
        )
        for name, entry in ood.items():
            examples = evaluation.ood[name].examples
            shown = min(EXAMPLES, len(examples))
            msp = entry.scores["msp"]
            st.markdown(f"**{OOD_LABELS.get(name, name)}**")
            st.image(
                [images.to_pixels(image, 72) for image in examples[:shown]],
                caption=[
                    f"{entry.prediction[i]} · {format_percent(msp[i])} · "
                    + ("rejected" if is_rejected(msp[i], threshold) else "ACCEPTED")
                    for i in range(shown)
                ],
                width=72,
            )

    if evaluation.reliability_before is not None and evaluation.reliability_after is not None:
        st.subheader("Calibration")
        meta = loaders.model_and_metadata(variant)[1]
        ece, ece_scaled, temp = st.columns(3)
        ece.metric("ECE, raw softmax", f"{meta.get('test_ece', float('nan')):.4f}")
        ece_scaled.metric(
            "ECE, calibrated (shown everywhere)",
            f"{meta.get('test_ece_scaled', float('nan')):.4f}",
        )
        temp.metric("temperature (fitted on validation)", f"{evaluation.temperature:.3f}")
        st.plotly_chart(
            curves.reliability_figure(
                evaluation.reliability_before.as_dict(), evaluation.reliability_after.as_dict()
            ),
            key="dl.rej.reliability",
        )
