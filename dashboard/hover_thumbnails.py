"""Hover thumbnails for the embedding map: hovering a point shows that MNIST test digit's 28×28
image, enlarged with crisp pixels, beside it, with its index, true label and prediction.

Plotly's hover labels hold text only, so a small ``st.components.v2`` component (its JavaScript
runs in the app's DOM, ``isolate_styles=False``) finds the map's Plotly graph div by its
``layout.meta`` (:data:`CHART_META`), listens to ``plotly_hover`` / ``plotly_unhover`` (again
whenever Streamlit re-renders or replaces the chart) and draws the hovered digit from one sprite:
all test digits tiled into one grayscale PNG, built here from the local MNIST at runtime (never
committed). The PNG travels as the component's raw bytes (no base64, no JSON): Streamlit sends a
large unchanged element once per session and a reference after that, and the browser decodes it
once per page load. Each point's custom data is ``[test index, true label, prediction]``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.components.v2 import component

from core.data import DataUnavailableError, resolve_data_dir
from core.inputs import IMAGE_SIDE
from dashboard import loaders

CHART_META = "digit-lens.embedding-map"  # the map's layout.meta: how the thumbnails find it
SPRITE_COLUMNS = 100  # 10,000 digits: a 2,800 × 2,800 px mosaic (about 1.7 MB as PNG)
THUMBNAIL_PIXELS = 84  # three screen pixels per digit pixel
COMPONENT_NAME = "digit_lens.hover_thumbnails"

CSS = """
.dl-hover-thumb {
  position: fixed; z-index: 1000100; pointer-events: none; box-sizing: border-box;
  padding: 4px 4px 3px; border: 1px solid rgba(128, 128, 128, 0.45);
  border-radius: var(--st-base-radius, 0.5rem); box-shadow: 0 2px 10px rgba(0, 0, 0, 0.3);
  background: var(--st-background-color, #fff); color: var(--st-text-color, #31333f);
  font: 12px/1.35 var(--st-font, "Source Sans Pro", sans-serif); text-align: center;
  white-space: nowrap;
}
.dl-hover-thumb[hidden] { display: none; }
.dl-hover-thumb canvas { display: block; margin: 0 auto 2px; image-rendering: pixelated;
  background: #000; }
.dl-hover-thumb .dl-wrong { color: #dc2626; font-weight: 600; }
"""

JS_CONFIG = {"meta": CHART_META, "side": IMAGE_SIDE, "pixels": THUMBNAIL_PIXELS}
JS = (
    f"const CONFIG = {json.dumps(JS_CONFIG)};\n"
    + """
// The sprite (raw PNG bytes), decoded once per page load and shared by every mount: the module
// stays loaded across reruns. Keyed by length and an FNV-1a hash of the bytes.
const decoded = { id: null, image: null };
const THEME = ["--st-background-color", "--st-text-color", "--st-base-radius", "--st-font"];

function fingerprint(bytes) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
  return `${bytes.length}:${hash >>> 0}`;
}

function spriteImage(bytes) {
  const id = fingerprint(bytes);
  if (decoded.id !== id) {
    decoded.id = id;
    const blob = new Blob([bytes], { type: "image/png" });
    decoded.image = createImageBitmap(blob, {
      colorSpaceConversion: "none", premultiplyAlpha: "none",
    });
  }
  return decoded.image;
}

export default function ({ data, parentElement }) {
  const { meta, side, pixels } = CONFIG;
  const tip = document.createElement("div");
  tip.className = "dl-hover-thumb";
  tip.setAttribute("role", "tooltip");
  tip.setAttribute("data-testid", "dlHoverThumbnail");
  tip.hidden = true;
  const theme = getComputedStyle(parentElement);
  for (const name of THEME) {
    const value = theme.getPropertyValue(name);
    if (value) tip.style.setProperty(name, value);
  }
  const canvas = document.createElement("canvas");
  canvas.width = side;
  canvas.height = side;
  canvas.style.width = canvas.style.height = `${pixels}px`;
  const caption = document.createElement("div");
  tip.append(canvas, caption);
  document.body.appendChild(tip);
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;

  let image = null;
  let shown = null; // { gd, index }
  let closed = false;
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) {
    spriteImage(new Uint8Array(data)).then(
      (loaded) => {
        image = loaded;
        parentElement.dataset.sprite = "ready";
        if (shown && !closed) draw(shown.index);
      },
      () => { parentElement.dataset.sprite = "failed"; },
    );
  }

  function draw(index) {
    context.clearRect(0, 0, side, side);
    delete tip.dataset.drawn;
    const columns = image ? Math.floor(image.width / side) : 0;
    if (!columns || index >= columns * Math.floor(image.height / side)) return;
    const col = index % columns;
    const row = Math.floor(index / columns);
    context.drawImage(image, col * side, row * side, side, side, 0, 0, side, side);
    tip.dataset.drawn = String(index);
  }

  function position(gd, point, event) {
    const box = gd.getBoundingClientRect();
    const xa = point.xaxis;
    const ya = point.yaxis;
    if (xa && ya && typeof xa.l2p === "function" && Number.isFinite(Number(point.x))) {
      return [box.left + xa._offset + xa.l2p(Number(point.x)),
              box.top + ya._offset + ya.l2p(Number(point.y))];
    }
    const mouse = event && event.event;
    return mouse ? [mouse.clientX, mouse.clientY] : null;
  }

  function place(x, y) {
    const gap = 14;
    const width = tip.offsetWidth;
    const height = tip.offsetHeight;
    let left = x - width - gap; // above and to the left: Plotly's label sits to the right
    let top = y - height - gap;
    if (left < 4) left = x + gap;
    if (top < 4) top = y + gap;
    left = Math.min(left, window.innerWidth - width - 4);
    top = Math.min(top, window.innerHeight - height - 4);
    tip.style.left = `${Math.max(0, left)}px`;
    tip.style.top = `${Math.max(0, top)}px`;
  }

  function show(gd, event) {
    const point = (event.points || []).find((p) => p.customdata && p.customdata.length >= 3);
    if (!point) { hide(); return; }
    const row = point.customdata;
    const index = Number(row[0]);
    const label = Number(row[1]);
    const predicted = Number(row[2]);
    if (!Number.isInteger(index) || index < 0) { hide(); return; }
    const where = position(gd, point, event);
    if (!where) { hide(); return; }
    shown = { gd, index };
    draw(index);
    caption.textContent = "";
    const title = document.createElement("div");
    title.textContent = `test #${index}`;
    const verdict = document.createElement("div");
    verdict.textContent = `true ${label} · predicted ${predicted}`;
    if (label !== predicted) verdict.className = "dl-wrong";
    caption.append(title, verdict);
    tip.dataset.index = String(index);
    tip.dataset.label = String(label);
    tip.dataset.predicted = String(predicted);
    tip.hidden = false;
    place(where[0], where[1]);
  }

  function hide() {
    shown = null;
    tip.hidden = true;
    delete tip.dataset.index;
  }

  // Streamlit may replace the graph div (a new chart) or re-plot it (Plotly.newPlot drops
  // listeners): re-attach after every DOM change, at most once a frame.
  const handlers = new Map();
  function attach() {
    for (const gd of document.querySelectorAll(".js-plotly-plot")) {
      if (typeof gd.on !== "function" || !gd.layout || gd.layout.meta !== meta) continue;
      let own = handlers.get(gd);
      if (!own) {
        own = { hover: (event) => show(gd, event), hide };
        handlers.set(gd, own);
      }
      for (const [name, listener] of [["plotly_hover", own.hover], ["plotly_unhover", own.hide],
                                      ["plotly_relayout", own.hide]]) {
        gd.removeListener(name, listener);
        gd.on(name, listener);
      }
      parentElement.dataset.attached = "true";
    }
    for (const gd of [...handlers.keys()]) {
      if (gd.isConnected) continue;
      handlers.delete(gd);
      if (shown && shown.gd === gd) hide();
    }
  }
  let queued = false;
  const observer = new MutationObserver(() => {
    if (queued || closed) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; if (!closed) attach(); });
  });
  observer.observe(document.body, { childList: true, subtree: true });
  window.addEventListener("scroll", hide, true);
  attach();

  return () => {
    closed = true;
    observer.disconnect();
    window.removeEventListener("scroll", hide, true);
    for (const [gd, own] of handlers) {
      if (typeof gd.removeListener !== "function") continue;
      gd.removeListener("plotly_hover", own.hover);
      gd.removeListener("plotly_unhover", own.hide);
      gd.removeListener("plotly_relayout", own.hide);
    }
    handlers.clear();
    tip.remove();
  };
}
"""
)

_component = component(COMPONENT_NAME, css=CSS, js=JS, isolate_styles=False)


def sprite(images: np.ndarray, columns: int = SPRITE_COLUMNS) -> np.ndarray:
    """Digits ``[n, h, w]`` (uint8) tiled row-major into one ``[rows·h, columns·w]`` mosaic:
    digit ``i`` at row ``i // columns``, column ``i % columns``; a short last row is black."""
    array = np.asarray(images)
    if array.ndim != 3 or array.dtype != np.uint8 or columns < 1:
        raise ValueError("sprite() wants uint8 images [n, h, w] and at least one column")
    count, height, width = array.shape
    rows = max(1, -(-count // columns))
    padded = np.zeros((rows * columns, height, width), np.uint8)
    padded[:count] = array
    return (
        padded.reshape(rows, columns, height, width)
        .swapaxes(1, 2)
        .reshape(rows * height, columns * width)
    )


def png_bytes(mosaic: np.ndarray) -> bytes:
    """A grayscale PNG of ``mosaic`` (lossless: every pixel value kept)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mosaic), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@st.cache_data(max_entries=2, show_spinner="Preparing the digit thumbnails…")
def _sprite(data_dir: str) -> tuple[bytes, np.ndarray]:
    """The sprite PNG of the test digits and their labels (``data_dir`` keys the cache)."""
    images, labels = loaders.mnist_test()
    return png_bytes(sprite(images)), labels


def sprite_for(labels: np.ndarray) -> bytes | None:
    """The test digits' sprite (PNG) when the MNIST test set here is the one the map was built
    from (its first ``len(labels)`` labels are ``labels``); else None."""
    try:
        png, mnist_labels = _sprite(str(resolve_data_dir()))
    except DataUnavailableError:
        return None
    labels = np.asarray(labels)
    if len(labels) > len(mnist_labels) or not np.array_equal(mnist_labels[: len(labels)], labels):
        return None
    return png


def mount(labels: np.ndarray, key: str) -> bool:
    """Hover thumbnails on the chart whose ``layout.meta`` is :data:`CHART_META` and whose points
    carry ``[test index, label, prediction]`` custom data; ``labels`` are the map's true labels,
    by test index. False (nothing mounted) when those test images are not available here."""
    png = sprite_for(labels)
    if png is None:
        return False
    _component(key=key, data=png, height="content")
    return True
