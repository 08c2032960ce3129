"""Captum Grad-CAM for any conv layer and class, the other attribution methods of the registry,
and the weight-randomisation sanity check that shows whether a map depends on what was learned."""

import streamlit as st

from core.explain import conv_layer_names
from core.methods import METHODS
from dashboard import charts, images, loaders, results, shell, state, widgets

shell.page_setup("attributions")

with shell.guard():
    variant = widgets.model_picker()
    current = state.require_input()
    model, _ = loaders.model_and_metadata(variant)
    layers = conv_layer_names(model)
    prediction = results.predictions(current.image)[variant]
    probs, predicted = prediction.probabilities, prediction.digit

    layer_col, target_col = st.columns(2)
    layer = layer_col.selectbox(
        "Conv layer for Grad-CAM",
        layers,
        index=len(layers) - 1,
        key=f"dl.cam.layer.{variant}",
        help="Later layers see larger parts of the digit but have coarser maps (7×7 for the "
        "last layer of cnn3); every map is upsampled to 28×28.",
    )
    target = target_col.selectbox(
        "Target class",
        charts.DIGITS,
        index=predicted,
        format_func=lambda d: (
            f"{d} (p = {probs[d]:.1%}){'  ← predicted' if d == predicted else ''}"
        ),
        key=f"dl.cam.target.{variant}.{current.digest}",
    )
    st.caption(f"{widgets.model_label(variant)} on {current.describe()}: why class **{target}**?")

    columns = st.columns(len(METHODS))
    for col, method in zip(columns, METHODS.values(), strict=True):
        heat = results.attribution(
            current.image, variant, method.key, target, layer if method.needs_layer else None
        )
        with col:
            st.plotly_chart(
                images.overlay_figure(
                    current.image, heat, method.label, height=260, signed=method.signed
                ),
                key=f"dl.cam.map.{method.key}",
            )
            st.caption(method.note)

    st.subheader("Sanity check: randomise the weights, layer by layer")
    st.markdown(
        "A map that explains the model must change when its learned weights are destroyed "
        "(Adebayo et al., 2018). Starting from the output, each layer is re-initialised in turn "
        "(earlier ones stay random) and the map is recomputed; ρ is its Spearman rank correlation "
        "with the trained model's map. Falling towards 0 means the method depends on the weights."
    )
    checked = st.selectbox(
        "Method to check",
        list(METHODS),
        format_func=lambda key: METHODS[key].label,
        key="dl.cam.sanity_method",
    )
    steps = results.sanity_steps(
        current.image, variant, checked, target, layer if METHODS[checked].needs_layer else None
    )
    st.image(
        [images.overlay_pixels(current.image, abs(step.attribution)) for step in steps],
        caption=[
            "trained model"
            if step.layer == "original"
            else f"{step.layer.removeprefix('features.').removeprefix('head.')}: ρ {step.spearman:+.2f}"
            for step in steps
        ],
        width=images.PREVIEW_PIXELS,
    )
    st.plotly_chart(charts.sanity_figure(steps), key="dl.cam.sanity")
