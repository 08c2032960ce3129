"""Draw or upload a digit; live top-3 predictions of the chosen models and what they really see."""

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core.predict import format_percent
from core.preprocess import MAX_UPLOAD_BYTES
from dashboard import charts, downloads, images, loaders, results, shell, state, widgets

arrived = shell.page_setup("draw")

with shell.guard():
    loaders.predictor()
    draw_col, result_col = st.columns([1, 1.35], gap="large")

    with draw_col:
        stroke_width = st.slider("Stroke width", 6, 40, 18, key="dl.draw.stroke")
        current = state.current_input()
        if current is not None and current.source == "sample":
            st.info(
                f"Now inspecting {current.describe()}, chosen on another page. Draw here or "
                "upload an image to replace it.",
                icon=":material/dataset:",
            )
        else:
            st.caption("Draw one digit, as large as you like.")
        canvas = st_canvas(
            stroke_width=stroke_width,
            stroke_color="#000000",
            background_color="#FFFFFF",
            drawing_mode="freedraw",
            height=280,
            width=280,
            update_streamlit=True,
            return_image_data=True,
            initial_drawing=state.canvas_initial_drawing(arrived),
            key=state.canvas_key(),
        )
        state.remember_drawing(canvas.json_data)
        canvas_state = state.take_canvas(canvas.image_data)
        undo_col, clear_col = st.columns(2)
        undo_col.button(
            "Undo last stroke",
            icon=":material/undo:",
            on_click=state.undo_stroke,
            disabled=state.strokes_drawn() == 0,
            key="dl.draw.undo",
            width="stretch",
        )
        clear_col.button(
            "Clear the canvas",
            icon=":material/delete:",
            on_click=state.clear_canvas,
            disabled=state.strokes_drawn() == 0,
            key="dl.draw.clear",
            width="stretch",
        )

    # Below both columns (on a phone: after the predictions), but read before they are computed.
    uploaded = st.file_uploader(
        "…or upload a photo or image of one digit",
        type=list(state.UPLOAD_TYPES),
        key=state.UPLOAD_KEY,
        help=f"PNG, JPEG, BMP, WebP or GIF (first frame), up to {MAX_UPLOAD_BYTES // 2**20} "
        "MB. Dark ink on light paper and light on dark both work.",
    )
    state.take_upload(uploaded)

    with result_col:
        with st.popover("Models and rejection", icon=":material/tune:"):
            models = widgets.models_picker()
            keep = widgets.keep_slider()
        current = state.current_input()
        if current is None:
            reason = "the canvas is empty" if canvas_state == "blank" else "nothing drawn yet"
            st.info(
                f"**Draw a digit** ({reason}): draw on the canvas or upload an image, and the "
                "predictions appear here as you draw.",
                icon=":material/draw:",
            )
            st.stop()
        if not models:
            st.info("Choose at least one model.")
            st.stop()

        st.caption(f"Predicting {current.describe()}.")
        predictions = results.predictions(current.image, keep)
        chosen = {v: predictions[v] for v in models if v in predictions}
        verdicts = st.columns(len(chosen))
        for col, (variant, prediction) in zip(verdicts, chosen.items(), strict=True):
            with col:
                if prediction.rejected:
                    st.metric(
                        variant,
                        "?",
                        f"not a digit? best guess {prediction.digit}",
                        delta_color="off",
                        delta_arrow="off",
                    )
                else:
                    st.metric(
                        variant,
                        str(prediction.digit),
                        format_percent(prediction.confidence),
                        delta_color="off",
                        delta_arrow="off",
                    )
                st.caption(" · ".join(f"{d}: {q:.1%}" for d, q in prediction.top3))
        rejected = {v: p for v, p in chosen.items() if p.rejected}
        if rejected:
            st.warning(
                "**Not a digit, or too unsure.** "
                + " ".join(f"{variant}: {p.reason}." for variant, p in rejected.items()),
                icon=":material/help:",
            )
        st.plotly_chart(
            charts.probability_figure({v: p.probabilities for v, p in chosen.items()}),
            key="dl.draw.bars",
        )
        st.caption(
            "Calibrated probabilities (temperature scaling). "
            + (
                "Rejection is off."
                if keep >= 1
                else f"Keeping {keep:.2%} of real digits means a calibrated confidence of at "
                "least "
                + ", ".join(f"{format_percent(p.threshold)} ({v})" for v, p in chosen.items())
                + "."
            )
        )

    png_col, json_col = st.columns(2)
    png_col.download_button(
        "Download the 28×28 input (PNG)",
        downloads.input_png(current.image),
        "digit-lens-input.png",
        "image/png",
        icon=":material/download:",
        key="dl.draw.png",
    )
    json_col.download_button(
        "Download the predictions (JSON)",
        downloads.predictions_json(current, chosen, keep),
        "digit-lens-predictions.json",
        "application/json",
        icon=":material/download:",
        key="dl.draw.json",
    )

    st.subheader("What the models see")
    stage_cols = st.columns(len(current.stages) + 1)
    for col, (name, stage) in zip(stage_cols, current.stages, strict=False):
        col.image(images.stage_preview(stage), caption=name)
    with stage_cols[-1]:
        st.plotly_chart(
            images.digit_figure(current.image, "28×28 input", height=190), key="dl.draw.input28"
        )
