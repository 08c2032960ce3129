"""The current input: the one digit every page inspects, and how the drawing pad and uploads set it.

Session-state keys follow one scheme, ``"dl." + what it holds``; widget keys of a page use
``"dl.<page>.*"``. The current input lives under :data:`INPUT_KEY`. A drawing is preprocessed
only when it changed; an upload is taken once, when it first appears, so a later drawing is not
overridden by a file still sitting in the uploader; a bad file never replaces the current input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from core.drawing import render_strokes
from core.preprocess import InvalidImageError, PreprocessResult, preprocess
from dashboard import navigation, sketchpad
from dashboard.shell import escape_markdown

INPUT_KEY = "dl.input"
CANVAS_STATE_KEY = "dl.canvas.state"
UPLOAD_KEY = "dl.draw.upload"
UPLOAD_STATE_KEY = "dl.upload.state"
UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "webp", "gif")


@dataclass(frozen=True)
class CurrentInput:
    """The digit every page inspects: the 28×28 image the models see, where it came from, and the
    preprocessing stages that produced it."""

    image: np.ndarray
    source: str
    name: str
    digest: str
    stages: tuple[tuple[str, np.ndarray], ...] = ()
    label: int | None = None
    test_index: int | None = None

    @classmethod
    def from_result(cls, result: PreprocessResult, source: str, name: str) -> CurrentInput:
        """From a preprocessing result (canvas or upload)."""
        image = np.ascontiguousarray(result.image, dtype=np.float32)
        return cls(image, source, name, _digest(image.tobytes()), tuple(result.stages.items()))

    @classmethod
    def from_image(
        cls,
        image: np.ndarray,
        source: str = "sample",
        name: str = "",
        label: int | None = None,
        test_index: int | None = None,
    ) -> CurrentInput:
        """From a ready 28×28 image in [0, 1] (or uint8), e.g. an MNIST test digit with its
        true ``label`` and its ``test_index``."""
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array / 255.0
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.shape != (28, 28):
            raise InvalidImageError(f"Expected a 28×28 image, got shape {array.shape}.")
        digest = _digest(array.tobytes())
        return cls(array, source, name, digest, (("28×28", array),), label, test_index)

    def describe(self) -> str:
        """One line for captions, Markdown-safe (file names are escaped)."""
        if self.source == "canvas":
            return "your drawing"
        if self.source == "upload":
            return f"uploaded file “{escape_markdown(self.name)}”"
        text = escape_markdown(self.name or self.source)
        return text + (f" (true label **{self.label}**)" if self.label is not None else "")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def current_input() -> CurrentInput | None:
    """The digit shared by all pages, or None before anything was drawn or uploaded."""
    value = st.session_state.get(INPUT_KEY)
    return value if isinstance(value, CurrentInput) else None


def set_current_input(value: CurrentInput | None) -> None:
    """Make ``value`` the digit every page inspects (None clears it).

    A test digit chosen elsewhere also clears the drawing pad, so the Draw page shows that digit
    instead of a stale drawing.
    """
    st.session_state[INPUT_KEY] = value
    if value is not None and value.source == "sample" and sketchpad.strokes():
        sketchpad.set_strokes([])
        st.session_state.pop(CANVAS_STATE_KEY, None)


def require_input() -> CurrentInput:
    """The current input, or an explanation with a link to the Draw page and ``st.stop()``."""
    value = current_input()
    if value is None:
        st.info(
            "No digit yet: draw one or upload an image on the **Draw & predict** page, then come "
            "back here to inspect it.",
            icon=":material/draw:",
        )
        navigation.page_link("draw")
        st.stop()
    return value


def take_drawing() -> str:
    """Feed the pad's strokes into the current input; return the pad's state.

    States: ``"untouched"`` (no strokes: keep the current input, which may be an upload or a
    test digit), ``"blank"`` (strokes that leave no ink on the pad: nothing to predict) or
    ``"drawn"``. Only a changed drawing is drawn and preprocessed again, so an upload made after
    the last stroke stays current until the next stroke.
    """
    strokes = sketchpad.strokes()
    if not strokes:
        st.session_state.pop(CANVAS_STATE_KEY, None)
        return "untouched"
    digest = _digest(repr(strokes).encode())
    previous = st.session_state.get(CANVAS_STATE_KEY)
    if previous and previous[0] == digest:
        return previous[1]
    try:
        result = preprocess(render_strokes(strokes))
    except InvalidImageError:
        state = "blank"
    else:
        state = "blank" if result.blank else "drawn"
    if state == "drawn":
        set_current_input(CurrentInput.from_result(result, "canvas", "canvas"))
    elif (current := current_input()) is not None and current.source == "canvas":
        set_current_input(None)
    st.session_state[CANVAS_STATE_KEY] = (digest, state)
    return state


@st.cache_data(max_entries=8, show_spinner=False)
def preprocess_bytes(data: bytes) -> PreprocessResult:
    """Preprocess uploaded bytes (cached; raises ``InvalidImageError`` for bad images).

    Few entries: a result keeps every stage, up to some MB for a large photo, and each upload
    is only preprocessed when it first appears anyway.
    """
    return preprocess(data)


def take_upload(uploaded: Any | None) -> None:
    """Feed an uploaded file into the current input, showing why when it cannot be used.

    A file is taken once (when it first appears), so a later drawing is not overridden by an
    upload still sitting in the box; its message stays visible while the file is there. A file
    that cannot be used clears the current input (its old predictions would otherwise look like
    the answer for the new file), with the reason shown; a drawing stays on the canvas, and the
    next stroke makes it current again.
    """
    if uploaded is None:
        st.session_state.pop(UPLOAD_STATE_KEY, None)
        return
    state = st.session_state.get(UPLOAD_STATE_KEY)
    if state is None or state[0] != uploaded.file_id:
        name = str(uploaded.name)
        try:
            result = preprocess_bytes(uploaded.getvalue())
        except InvalidImageError as error:
            set_current_input(None)
            state = (
                uploaded.file_id,
                "error",
                f"“{escape_markdown(name)}”: {escape_markdown(error)}",
            )
        else:
            if result.blank:
                set_current_input(None)
                state = (
                    uploaded.file_id,
                    "blank",
                    f"“{escape_markdown(name)}” is blank or uniform: there is no digit to read.",
                )
            else:
                set_current_input(CurrentInput.from_result(result, "upload", name))
                state = (uploaded.file_id, "ok", "")
        st.session_state[UPLOAD_STATE_KEY] = state
    if state[1] == "error":
        st.error(f"**This file cannot be used.** {state[2]}", icon=":material/broken_image:")
    elif state[1] == "blank":
        st.warning(state[2], icon=":material/crop_free:")


def clear_canvas() -> None:
    """Start over: an empty pad, and a drawing is no longer the current input."""
    sketchpad.set_strokes([])
    st.session_state.pop(CANVAS_STATE_KEY, None)
    current = current_input()
    if current is not None and current.source == "canvas":
        set_current_input(None)


def undo_stroke() -> None:
    """Take back the last stroke (the drawing before it becomes the current input)."""
    strokes = sketchpad.strokes()
    if len(strokes) <= 1:
        clear_canvas()
        return
    sketchpad.set_strokes(strokes[:-1])


def strokes_drawn() -> int:
    """How many strokes are on the pad (for enabling Undo and Clear)."""
    return len(sketchpad.strokes())
