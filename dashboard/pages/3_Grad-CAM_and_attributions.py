"""Captum Grad-CAM for any conv layer and class, three more attribution methods, and the
weight-randomisation sanity check that shows whether a map depends on what the model learned."""

import streamlit as st

from core.explain import ATTRIBUTION_METHODS, conv_layer_names
from dashboard import figures, ui

SIGNED = {"integrated_gradients", "occlusion"}
NOTES = {
    "gradcam": "class-weighted feature maps of the chosen layer, upsampled (positive part)",
    "integrated_gradients": "path integral from the black image; red for, blue against",
    "saliency": "absolute input gradient of the target logit",
    "occlusion": "logit drop when a 4×4 patch is blacked out; red for, blue against",
}

ui.page_setup("Grad-CAM & attributions")

with ui.guard():
    variant = ui.model_picker()
    current = ui.require_input()
    model, _ = ui.model_and_metadata(variant)
    layers = conv_layer_names(model)
    probs = ui.probabilities(current.image)[variant]
    predicted = int(probs.argmax())

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
        figures.DIGITS,
        index=predicted,
        format_func=lambda d: (
            f"{d} (p = {probs[d]:.1%}){'  ← predicted' if d == predicted else ''}"
        ),
        key=f"dl.cam.target.{variant}.{current.digest}",
    )
    st.caption(f"{ui.model_label(variant)} on {current.describe()}: why class **{target}**?")

    columns = st.columns(len(ATTRIBUTION_METHODS))
    for col, (method, label) in zip(columns, ATTRIBUTION_METHODS.items(), strict=True):
        heat = ui.attribution(
            current.image, variant, method, target, layer if method == "gradcam" else None
        )
        with col:
            st.plotly_chart(
                figures.overlay_figure(
                    current.image, heat, label, height=260, signed=method in SIGNED
                ),
                key=f"dl.cam.map.{method}",
            )
            st.caption(NOTES[method])

    st.subheader("Sanity check: randomise the weights, layer by layer")
    st.markdown(
        "A map that explains the model must change when its learned weights are destroyed "
        "(Adebayo et al., 2018). Starting from the output, each layer is re-initialised in turn "
        "(earlier ones stay random) and the map is recomputed; ρ is its Spearman rank correlation "
        "with the trained model's map. Falling towards 0 means the method depends on the weights."
    )
    method = st.selectbox(
        "Method to check",
        list(ATTRIBUTION_METHODS),
        format_func=ATTRIBUTION_METHODS.get,
        key="dl.cam.sanity_method",
    )
    steps = ui.sanity_steps(
        current.image, variant, method, target, layer if method == "gradcam" else None
    )
    st.image(
        [figures.overlay_pixels(current.image, abs(step.attribution)) for step in steps],
        caption=[
            "trained model"
            if step.layer == "original"
            else f"{step.layer.removeprefix('features.').removeprefix('head.')}: ρ {step.spearman:+.2f}"
            for step in steps
        ],
        width=figures.PREVIEW_PIXELS,
    )
    st.plotly_chart(figures.sanity_figure(steps), key="dl.cam.sanity")
