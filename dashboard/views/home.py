"""digit-lens home: what this is, the shipped models, their training curves and model cards."""

import pandas as pd
import streamlit as st

from core.model_card import render_model_card
from dashboard import charts, loaders, navigation, shell, widgets

shell.page_setup("home", "digit-lens")
st.markdown(
    "Draw or upload a handwritten digit and watch three small convolutional networks "
    "(1, 2 and 3 conv blocks, LeakyReLU) and two baselines without convolutions (logistic "
    "regression, an MLP) read it: calibrated top-3 predictions that say *not a digit, or too "
    "unsure* when they should, the feature maps of every conv layer, eight attribution methods "
    "with their faithfulness and a sanity check, the models side by side (and what convolution "
    "buys), and the test-set mistakes they make."
)

with shell.guard():
    pred = loaders.predictor()
    variants = loaders.loaded_variants()

    cols = st.columns(3)
    for col, key in zip(cols * 3, list(navigation.PAGES)[1:], strict=False):
        with col:
            navigation.page_link(key)

    st.header("The models")
    rows = []
    for variant in variants:
        meta = pred.metadata[variant]
        training = meta.get("training", {})
        rows.append(
            {
                "model": variant,
                "conv blocks": len(meta.get("config", {}).get("channels", [])),
                "parameters": meta["params"],
                "test accuracy": meta["test_accuracy"],
                "test errors": meta.get("test_errors"),
                "ECE": meta.get("test_ece"),
                "epochs": training.get("epochs_run"),
                "training time (s)": training.get("seconds"),
            }
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        column_config={
            "parameters": st.column_config.NumberColumn(format="localized"),
            "test accuracy": st.column_config.NumberColumn(format="percent"),
            "ECE": st.column_config.NumberColumn(format="%.4f", help="Expected calibration error"),
            "training time (s)": st.column_config.NumberColumn(format="%.0f"),
        },
    )
    st.caption(
        "Measured on the 10,000 MNIST test images by `scripts/train_all.py`; read from the "
        "checkpoint metadata."
    )

    st.header("Training curves")
    histories = {v: pred.metadata[v].get("history", []) for v in variants}
    st.plotly_chart(charts.training_curves_figure(histories), key="dl.home.curves")

    st.header("Model cards")
    for variant in variants:
        with st.expander(f"Model card: {widgets.model_label(variant)}"):
            try:
                st.markdown(render_model_card(pred.metadata[variant]))
            except (KeyError, TypeError, ValueError) as error:
                st.warning(f"The model card of {variant} is incomplete ({error!r}).")
