"""Draw or upload a digit; live top-3 predictions of the chosen models and what they really see."""

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core.preprocess import MAX_UPLOAD_BYTES
from dashboard import charts, images, loaders, results, shell, state, widgets

arrived = shell.page_setup("draw")

with shell.guard():
    loaders.predictor()
    draw_col, result_col = st.columns([1, 1.35], gap="large")

    with draw_col:
        stroke_width = st.slider("Stroke width", 6, 40, 18, key="dl.draw.stroke")
        st.caption("Draw one digit, as large as you like. Undo, redo and clear: canvas toolbar.")
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
            key=state.CANVAS_KEY,
        )
        state.remember_drawing(canvas.json_data)
        canvas_state = state.take_canvas(canvas.image_data)
        uploaded = st.file_uploader(
            "…or upload a photo or image of one digit",
            type=list(state.UPLOAD_TYPES),
            key=state.UPLOAD_KEY,
            help=f"PNG, JPEG, BMP, WebP or GIF (first frame), up to {MAX_UPLOAD_BYTES // 2**20} "
            "MB. Dark ink on light paper and light on dark both work.",
        )
        state.take_upload(uploaded)

    with result_col:
        models = widgets.models_picker()
        threshold = widgets.threshold_slider()
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
        predictions = results.predictions(current.image, threshold)
        chosen = {v: predictions[v] for v in models if v in predictions}
        verdicts = st.columns(len(chosen))
        for col, (variant, prediction) in zip(verdicts, chosen.items(), strict=True):
            with col:
                if prediction.rejected:
                    st.metric(
                        variant,
                        "?",
                        f"not sure: {prediction.digit} at {prediction.confidence:.0%}",
                        delta_color="off",
                        delta_arrow="off",
                    )
                else:
                    st.metric(
                        variant,
                        str(prediction.digit),
                        f"{prediction.confidence:.1%} confident",
                        delta_color="off",
                        delta_arrow="off",
                    )
                st.caption(" · ".join(f"{d}: {q:.1%}" for d, q in prediction.top3))
        rejected = {v: p for v, p in chosen.items() if p.rejected}
        if rejected:
            st.warning(
                "**Not a digit / not sure**: "
                + "; ".join(f"{variant}: {p.reason}" for variant, p in rejected.items())
                + ".",
                icon=":material/help:",
            )
        st.plotly_chart(
            charts.probability_figure({v: p.probabilities for v, p in chosen.items()}, threshold),
            key="dl.draw.bars",
        )

    st.subheader("What the models see")
    stage_cols = st.columns(len(current.stages) + 1)
    for col, (name, stage) in zip(stage_cols, current.stages, strict=False):
        col.image(images.stage_preview(stage), caption=name)
    with stage_cols[-1]:
        st.plotly_chart(
            images.digit_figure(current.image, "28×28 input", height=190), key="dl.draw.input28"
        )
