"""The drawing pad of the Draw page: a 280×280 canvas for mouse, pen and finger.

Each stroke is sent the moment the pen lifts (the drawable-canvas component waited 200 ms before
sending), as a list of points; the server keeps the strokes and draws them itself with
:func:`core.drawing.render_strokes`, so Undo and Clear are ordinary buttons, the drawing survives
page switches, and what the models read never depends on the browser's anti-aliasing. Pointer
events make touch drawing work on phones (the pad does not scroll the page under a finger).

The browser is not trusted: what it sends is validated by :func:`core.drawing.parse_strokes`, and
anything malformed is ignored with a message.
"""

from __future__ import annotations

import streamlit as st

from core.drawing import PAD_SIZE, Stroke, parse_strokes

PAD_KEY = "dl.pad"
STROKES_KEY = "dl.pad.strokes"
GENERATION_KEY = "dl.pad.generation"
ERROR_KEY = "dl.pad.error"

_CSS = """
.dl-pad-frame { display: inline-block; line-height: 0; border-radius: 0.25rem;
  border: 1px solid rgba(49, 51, 63, 0.35); }
.dl-pad { display: block; touch-action: none; cursor: crosshair; background: #fff;
  border-radius: 0.25rem; }
"""

# The pad keeps its own copy of the strokes so a new stroke shows at once; a new ``generation``
# from the server (after Undo or Clear, or on a fresh mount) replaces it.
_JS = """
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let pad = parentElement.querySelector("canvas.upper-canvas");
  if (!pad) {
    pad = document.createElement("canvas");
    pad.className = "upper-canvas dl-pad";
    pad.setAttribute("role", "img");
    pad.setAttribute("aria-label", "Drawing pad: draw one digit");
    const frame = document.createElement("div");
    frame.className = "dl-pad-frame";
    frame.appendChild(pad);
    parentElement.appendChild(frame);
    pad.dlState = { strokes: [], generation: null, width: 18, current: null };
    const ctx = pad.getContext("2d");
    const point = (event) => {
      const box = pad.getBoundingClientRect();
      const scale = pad.width / box.width;
      return [Math.round((event.clientX - box.left) * scale * 10) / 10,
              Math.round((event.clientY - box.top) * scale * 10) / 10];
    };
    pad.addEventListener("pointerdown", (event) => {
      if (event.button !== undefined && event.button > 0) return;
      event.preventDefault();
      pad.setPointerCapture(event.pointerId);
      const s = pad.dlState;
      s.current = { w: s.width, p: [point(event)] };
      paintStroke(ctx, s.current);
    });
    pad.addEventListener("pointermove", (event) => {
      const s = pad.dlState;
      if (!s.current) return;
      event.preventDefault();
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      for (const e of (events.length ? events : [event])) s.current.p.push(point(e));
      paintStroke(ctx, s.current);
    });
    const finish = (event) => {
      const s = pad.dlState;
      if (!s.current) return;
      s.strokes.push(s.current);
      s.current = null;
      setStateValue("strokes", { generation: s.generation, strokes: s.strokes });
    };
    pad.addEventListener("pointerup", finish);
    pad.addEventListener("pointercancel", finish);
  }
  const s = pad.dlState;
  s.width = data.width;
  if (pad.width !== data.size) { pad.width = data.size; pad.height = data.size; }
  pad.style.width = data.size + "px";
  pad.style.height = data.size + "px";
  if (s.generation !== data.generation) {
    s.generation = data.generation;
    s.strokes = data.strokes.slice();
  }
  repaint(pad, s);
}

function paintStroke(ctx, stroke) {
  ctx.fillStyle = "#000";
  ctx.strokeStyle = "#000";
  ctx.lineWidth = stroke.w;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  const [x0, y0] = stroke.p[0];
  if (stroke.p.length === 1) {
    ctx.beginPath();
    ctx.arc(x0, y0, stroke.w / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  for (const [x, y] of stroke.p.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function repaint(pad, s) {
  const ctx = pad.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  for (const stroke of s.strokes) paintStroke(ctx, stroke);
  if (s.current) paintStroke(ctx, s.current);
}
"""

_COMPONENT = st.components.v2.component("digit_lens.sketchpad", html="", css=_CSS, js=_JS)


def strokes() -> list[Stroke]:
    """The strokes on the pad (kept in the session, so they survive page switches)."""
    return list(st.session_state.get(STROKES_KEY, []))


def generation() -> int:
    """Bumped whenever the server changes the strokes (Undo, Clear, a test digit chosen)."""
    return int(st.session_state.get(GENERATION_KEY, 0))


def set_strokes(new: list[Stroke]) -> None:
    """Replace the strokes and tell the pad to redraw them."""
    st.session_state[STROKES_KEY] = list(new)
    st.session_state[GENERATION_KEY] = generation() + 1


def _take_sent() -> None:
    """The pad sent its strokes (a stroke just ended): keep them, before the script reruns, so
    the data the pad gets back already holds them."""
    value = st.session_state.get(PAD_KEY)
    sent = value.get("strokes") if hasattr(value, "get") else None
    if not isinstance(sent, dict) or sent.get("generation") != generation():
        return  # from before an Undo or Clear: the pad is being redrawn
    try:
        st.session_state[STROKES_KEY] = parse_strokes(sent.get("strokes"))
    except ValueError as error:
        st.session_state[ERROR_KEY] = str(error)


def sketchpad(stroke_width: int) -> None:
    """Show the pad with the session's strokes, drawing new ones ``stroke_width`` px wide.

    What the browser sends is taken by a callback before the script reruns; something that is
    not a drawing is ignored, with a message.
    """
    error = st.session_state.pop(ERROR_KEY, None)
    if error:
        st.warning(f"The drawing could not be read ({error}); it was ignored.")
    _COMPONENT(
        key=PAD_KEY,
        data={
            "width": int(stroke_width),
            "size": PAD_SIZE,
            "generation": generation(),
            "strokes": [{"w": s.width, "p": [list(p) for p in s.points]} for s in strokes()],
        },
        default={"strokes": None},
        on_strokes_change=_take_sent,
        width=PAD_SIZE + 2,
        height=PAD_SIZE + 2,
    )
