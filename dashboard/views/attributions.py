"""Which explanation to believe: every attribution method for the current digit in one grid,
each with its faithfulness on this digit and over the test set and its sanity-check verdict."""

import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from core.explain import conv_layer_names
from core.faithfulness import BASELINE_MAPS, most_faithful
from core.methods import METHODS
from core.sanity import sanity_verdict
from dashboard import charts, curves, images, loaders, results, shell, state, tables, widgets

shell.page_setup("attributions")

with shell.guard():
    variant = widgets.model_picker()
    current = state.require_input()
    model, _ = loaders.model_and_metadata(variant)
    layers = conv_layer_names(model)
    prediction = results.predictions(current.image, widgets.keep())[variant]
    probs, predicted = prediction.probabilities, prediction.digit
    methods = {k: m for k, m in METHODS.items() if layers or not m.needs_layer}
    test_set = (loaders.faithfulness_table() or {}).get("models", {}).get(variant)

    layer_col, target_col = st.columns(2)
    layer = None
    if layers:
        layer = layer_col.selectbox(
            "Conv layer for Grad-CAM and HiResCAM",
            layers,
            index=len(layers) - 1,
            key=f"dl.cam.layer.{variant}",
            help="Later layers see larger parts of the digit but have coarser maps (7×7 for "
            "the last layer of cnn3); every map is upsampled to 28×28.",
        )
    else:
        skipped = ", ".join(m.label for m in METHODS.values() if m.needs_layer)
        layer_col.info(
            f"{widgets.model_label(variant)} has no conv layers, so {skipped} do not apply; "
            "the pixel attributions below do. Pick a CNN in the sidebar for the CAM methods.",
            icon=":material/info:",
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

    st.subheader("Every method, the three most probable classes")
    top3 = [digit for digit, _ in prediction.top3]
    grid = {
        key: [
            results.attribution(
                current.image, variant, key, digit, layer if m.needs_layer else None
            )
            for digit in top3
        ]
        for key, m in methods.items()
    }
    verdicts = tables.sanity_verdicts(test_set, methods, layer)
    for key, maps in grid.items():
        label_col, *map_cols = st.columns([1.4, 1, 1, 1])
        label_col.markdown(f"**{methods[key].label}** {verdicts.get(key, '')}")
        label_col.caption(methods[key].note)
        for col, digit, values in zip(map_cols, top3, maps, strict=True):
            col.image(
                images.signed_overlay_pixels(current.image, values, size=120),
                caption=f"class {digit} ({probs[digit]:.1%})",
            )
    st.caption(
        "One symmetric scale for every map: each map is divided by its largest magnitude, red "
        "for the class, blue against it, white for zero. Sanity verdicts come from the test set "
        "(below); ✓ passes, ✗ fails."
    )

    st.subheader(f"How faithful is each map to the model, on this digit (class {target})?")
    road = st.toggle(
        "Also compute ROAD (remove and debias: noisy linear imputation, slower)", key="dl.cam.road"
    )
    scores = results.map_faithfulness(current.image, variant, target, layer, road)
    st.dataframe(
        pd.DataFrame(tables.faithfulness_rows(scores)),
        hide_index=True,
        column_config=tables.FAITHFULNESS_COLUMNS,
    )
    st.plotly_chart(
        curves.faithfulness_figure(
            {name: (s.deletion_curve, s.insertion_curve) for name, s in scores.items()}
        ),
        key="dl.cam.faithfulness",
    )
    st.caption(
        "Deletion: pixels are set to black most-relevant-first; a faithful map makes the "
        "probability fall fast (small area). Insertion: pixels are added to a black image "
        "most-relevant-first; a faithful map makes it rise fast (large area). "
        f"{BASELINE_MAPS['random']} and {BASELINE_MAPS['edges']} (which ignores the model) say "
        "what the numbers are worth: a method that does not beat the edge map explains the digit's "
        "shape more than the model."
    )

    if test_set:
        st.subheader("Over the test set")
        st.dataframe(
            pd.DataFrame(tables.test_set_faithfulness_rows(test_set)),
            hide_index=True,
            column_config=tables.FAITHFULNESS_COLUMNS,
        )
        st.caption(
            f"{test_set['images']:,} fixed MNIST test digits (`scripts/faithfulness.py`), target "
            "= the model's prediction; randomisation ρ on "
            f"{test_set['sanity_images']} of them. A method passes the sanity check when ρ "
            "between its map and the map of the fully randomised model stays below 0.5 "
            "(Adebayo et al. 2018): above that, the map follows the input more than the model."
        )

    st.subheader("Sanity check on this digit: randomise the weights, layer by layer")
    best = most_faithful(test_set["methods"]) if test_set else None
    options = list(methods)
    checked = st.selectbox(
        "Method to check",
        options,
        index=options.index(best) if best in options else 0,
        format_func=lambda key: (
            METHODS[key].label + ("  (most faithful on the test set)" if key == best else "")
        ),
        key=f"dl.cam.sanity_method.{variant}",
    )
    steps = results.sanity_steps(
        current.image, variant, checked, target, layer if METHODS[checked].needs_layer else None
    )
    verdict = sanity_verdict(steps)
    (st.success if verdict.passed else st.warning)(
        f"**{METHODS[checked].label} {'passes' if verdict.passed else 'fails'}** on this digit: "
        f"{verdict.reason}. Entropy of the map rises ×{verdict.complexity_ratio:.2f} when the "
        "model is destroyed (eMPRT; above 1 is expected of a faithful method)."
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
    st.plotly_chart(curves.sanity_figure(steps), key="dl.cam.sanity")

    chosen = results.attribution(
        current.image, variant, checked, target, layer if METHODS[checked].needs_layer else None
    )
    png = io.BytesIO()
    Image.fromarray(images.signed_overlay_pixels(current.image, chosen, size=280)).save(png, "PNG")
    npy = io.BytesIO()
    np.save(npy, chosen.astype(np.float32))
    name = f"{variant}_{checked}_class{target}"
    png_col, npy_col = st.columns(2)
    png_col.download_button(
        "Download this map (PNG)", png.getvalue(), f"{name}.png", "image/png", key="dl.cam.png"
    )
    npy_col.download_button(
        "Download this map (.npy, 28×28 float32)",
        npy.getvalue(),
        f"{name}.npy",
        "application/octet-stream",
        key="dl.cam.npy",
    )
