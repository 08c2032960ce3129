"""Draw or upload a digit; live top-3 predictions of the chosen models and what they really see."""

import streamlit as st

from core.predict import format_percent
from core.preprocess import MAX_UPLOAD_BYTES
from dashboard import (
    charts,
    downloads,
    images,
    links,
    loaders,
    results,
    shell,
    sketchpad,
    state,
    widgets,
)

STROKE_KEY = "dl.draw.stroke"
DEFAULT_STROKE = 18

shell.page_setup("draw")


@st.fragment
def draw_and_predict() -> None:
    """Everything that follows a stroke: a stroke or an upload reruns only this part (no
    navigation, no page set-up), so the prediction shows sooner."""
    links.update()  # a model or operating point chosen here goes into the URL at once
    with shell.guard():
        draw_col, result_col = st.columns([1, 1.35], gap="large")

        with draw_col:
            current = state.current_input()
            if current is not None and current.source == "sample":
                st.info(
                    f"Now inspecting {current.describe()}, chosen on another page. Draw here or "
                    "upload an image to replace it.",
                    icon=":material/dataset:",
                )
            else:
                st.caption("Draw one digit, as large as you like.")
            sketchpad.sketchpad(st.session_state.get(STROKE_KEY, DEFAULT_STROKE))
            canvas_state = state.take_drawing()
            # side by side on a phone too (columns would stack), so predictions stay in view
            buttons = st.container(horizontal=True, gap="small")
            buttons.button(
                "Undo last stroke",
                icon=":material/undo:",
                on_click=state.undo_stroke,
                disabled=state.strokes_drawn() == 0,
                key="dl.draw.undo",
            )
            buttons.button(
                "Clear the canvas",
                icon=":material/delete:",
                on_click=state.clear_canvas,
                disabled=state.strokes_drawn() == 0,
                key="dl.draw.clear",
            )
            with buttons.popover("Pen and models", icon=":material/tune:"):
                st.slider("Stroke width", 6, 40, DEFAULT_STROKE, key=STROKE_KEY)
                models = widgets.models_picker()
                keep = widgets.keep_slider()

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
            # a row that wraps (columns would stack one model per row on a phone)
            verdicts = st.container(horizontal=True, gap="small")
            for variant, prediction in chosen.items():
                with verdicts.container(width=92):
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


with shell.guard():
    loaders.predictor()
draw_and_predict()
