"""Shared dashboard pieces: page setup, error display, cached loaders, the current input and the
shared widgets (model picker, rejection threshold). Figures live in :mod:`dashboard.figures`.

Pages stay thin: they lay out widgets and call this module and ``core/``. The rules this module
keeps in one place:

- **Caching.** Models (one :class:`core.predict.Predictor` per checkpoint directory) and the MNIST
  test set are ``st.cache_resource`` (shared, read-only); per-image results and evaluation files are
  ``st.cache_data`` with ``max_entries``, so many distinct uploads keep memory bounded.
- **Session state.** Every key this app stores starts with ``dl.``; the current input lives under
  :data:`INPUT_KEY` so every page inspects the same digit, the rejection threshold under
  :data:`THRESHOLD_KEY` so the Draw page and the Rejection page share it.
- **Errors.** :func:`guard` turns the errors ``core`` raises for bad checkpoints, missing data and
  bad images into ``st.error`` / ``st.info`` once, instead of a traceback. Text that comes from
  users (file names) is escaped before it reaches Markdown.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from core.calibration import risk_coverage
from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError
from core.data import DataUnavailableError, load_mnist_test, resolve_data_dir
from core.evalfile import read_eval_file
from core.explain import activations, attribute, conv_layer_names, model_lock
from core.models import VARIANTS
from core.ood import OOD_LABELS, OOD_SETS, auroc, energy_score, msp_score, rejection_rate
from core.predict import Predictor
from core.preprocess import InvalidImageError, PreprocessResult, preprocess
from core.sanity import cascading_randomization
from core.train import to_input
from dashboard.figures import DIGITS

# One image at a time: a second intra-op thread only adds contention between concurrent sessions
# (measured under load: Grad-CAM p50 157 ms with 2 threads vs 2 ms with 1 on cnn3).
torch.set_num_threads(1)

CHECKPOINTS_ENV_VAR = "DIGIT_LENS_CHECKPOINTS"

# Session-state keys: one scheme, "dl." + what it holds. Widget keys of pages use "dl.<page>.*".
INPUT_KEY = "dl.input"
THRESHOLD_KEY = "dl.threshold"
MODEL_KEY = "dl.model"
PAGE_KEY = "dl.page"
MODELS_KEY = "dl.models"
CANVAS_KEY = "dl.draw.canvas"
CANVAS_STATE_KEY = "dl.canvas.state"
CANVAS_DRAWING_KEY = "dl.canvas.drawing"
UPLOAD_KEY = "dl.draw.upload"
UPLOAD_STATE_KEY = "dl.upload.state"

# With the shipped models this keeps 95-98% of MNIST test digits (at 99.95-99.98% accuracy) and
# rejects 86-93% of Fashion-MNIST and 72-75% of scribbles; see the Rejection & OOD page.
DEFAULT_THRESHOLD = 0.7
UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "webp", "gif")

PAGES = {
    "Home": "Home.py",
    "Draw & predict": "pages/1_Draw_and_predict.py",
    "Activations": "pages/2_Activations.py",
    "Grad-CAM & attributions": "pages/3_Grad-CAM_and_attributions.py",
    "Compare architectures": "pages/4_Compare_architectures.py",
    "Error browser": "pages/5_Error_browser.py",
    "Rejection & OOD": "pages/6_Rejection_and_OOD.py",
}
PAGE_ICONS = {
    "Home": ":material/home:",
    "Draw & predict": ":material/draw:",
    "Activations": ":material/grid_view:",
    "Grad-CAM & attributions": ":material/visibility:",
    "Compare architectures": ":material/compare:",
    "Error browser": ":material/bug_report:",
    "Rejection & OOD": ":material/block:",
}


# ---------------------------------------------------------------------------------------------
# Page setup and error display


def page_setup(title: str, heading: str | None = None) -> bool:
    """Page config (title, icon, wide layout) and the heading; call first on every page.

    Returns whether the user just arrived on this page (the previous run showed another page),
    which is when widgets of this page were mounted afresh.
    """
    st.set_page_config(
        page_title=f"{title} · digit-lens", page_icon=PAGE_ICONS.get(title), layout="wide"
    )
    st.title(heading or title)
    arrived = st.session_state.get(PAGE_KEY) != title
    st.session_state[PAGE_KEY] = title
    return arrived


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def escape_markdown(text: str) -> str:
    """``text`` with every Markdown-active character escaped, so user text shows as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


@contextmanager
def guard() -> Iterator[None]:
    """Show the errors ``core`` raises as ``st.error`` / ``st.info`` and stop the page cleanly.

    Bad checkpoints, missing MNIST data and unreadable images are expected states, not bugs; every
    page wraps its body in ``with ui.guard():`` so they never surface as a traceback. It also
    warns once about every model that could not be loaded (the others stay usable).
    """
    try:
        store = model_store()
        if store.predictor is None:
            raise CheckpointError(" ".join(store.errors.values()) or "No model was loaded.")
        for message in store.errors.values():
            st.warning(
                f"**Model unavailable.** {escape_markdown(message)}", icon=":material/warning:"
            )
        yield
    except CheckpointError as error:
        st.error(
            "**The models could not be loaded.** "
            f"{escape_markdown(error)}\n\nRestore the `checkpoints/` folder from git or retrain "
            "with `python scripts/train_all.py`.",
            icon=":material/error:",
        )
        st.stop()
    except DataUnavailableError as error:
        st.info(
            f"**The MNIST test images are not available.** {escape_markdown(error)}",
            icon=":material/cloud_off:",
        )
        st.stop()
    except InvalidImageError as error:
        st.error(f"**This image cannot be read.** {escape_markdown(error)}")
        st.stop()


# ---------------------------------------------------------------------------------------------
# Loaders


def checkpoint_dir() -> str:
    """Checkpoint directory: ``$DIGIT_LENS_CHECKPOINTS`` or the shipped ``checkpoints/``."""
    return os.environ.get(CHECKPOINTS_ENV_VAR) or str(DEFAULT_DIRECTORY)


def _directory_signature(directory: str) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of the checkpoint files, so replaced files invalidate the caches."""
    path = Path(directory)
    if not path.is_dir():
        return ()
    return tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.iterdir())
        if p.suffix in {".safetensors", ".json", ".npz"}
    )


@dataclass(frozen=True)
class ModelStore:
    """The loaded models of one checkpoint directory, and why the others could not be loaded."""

    predictor: Predictor | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        """Loaded variants, in :data:`core.models.VARIANTS` order."""
        return [] if self.predictor is None else [v for v in VARIANTS if v in self.predictor.models]


@st.cache_resource(max_entries=4, show_spinner="Loading the models…")
def _load_store(directory: str, signature: tuple) -> ModelStore:
    try:
        return ModelStore(Predictor(VARIANTS, directory))
    except CheckpointError:
        pass
    good, errors = [], {}
    for variant in VARIANTS:
        try:
            Predictor((variant,), directory)
            good.append(variant)
        except CheckpointError as error:
            errors[variant] = str(error)
    return ModelStore(Predictor(tuple(good), directory) if good else None, errors)


def model_store() -> ModelStore:
    """Every variant that loads, plus a readable error for each one that does not (cached)."""
    directory = checkpoint_dir()
    signature = _directory_signature(directory)
    return _load_store(directory, signature)


def predictor() -> Predictor:
    """The cached predictor of every model that loads; ``CheckpointError`` if none does."""
    store = model_store()
    if store.predictor is None:
        raise CheckpointError(f"No model could be loaded from {checkpoint_dir()}.")
    return store.predictor


def _loaded(variant: str, directory: str, signature: tuple) -> tuple[torch.nn.Module, dict]:
    """Model and metadata from the cache (inside cached functions: no UI calls)."""
    pred = _load_store(directory, signature).predictor
    if pred is None or variant not in pred.models:
        raise CheckpointError(f"Model {variant!r} is not loaded.")
    return pred.models[variant], pred.metadata[variant]


def model_and_metadata(variant: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A loaded model and its checkpoint metadata."""
    pred = predictor()
    return pred.models[variant], pred.metadata[variant]


@st.cache_data(max_entries=8, show_spinner=False)
def _eval_arrays(variant: str, directory: str, signature: tuple) -> dict[str, np.ndarray]:
    return read_eval_file(variant, directory)


def eval_arrays(variant: str) -> dict[str, np.ndarray]:
    """The precomputed test-set arrays of a variant (``logits``, ``probabilities``, ``labels``…)."""
    directory = checkpoint_dir()
    arrays = _eval_arrays(variant, directory, _directory_signature(directory))
    for key in ("probabilities", "labels"):
        if key not in arrays:
            raise CheckpointError(f"Evaluation file of {variant!r} lacks {key!r}.")
    return arrays


@st.cache_resource(max_entries=2, show_spinner="Loading the MNIST test images…")
def _mnist_test(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_mnist_test(data_dir)
    return images.numpy(), labels.numpy()


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images (uint8 ``[10000, 28, 28]``) and labels; raises ``DataUnavailableError``."""
    return _mnist_test(str(resolve_data_dir()))


# ---------------------------------------------------------------------------------------------
# The current input


@dataclass(frozen=True)
class CurrentInput:
    """The digit every page inspects: the 28×28 image the models see, where it came from, and the
    preprocessing stages that produced it."""

    image: np.ndarray
    source: str
    name: str
    digest: str
    stages: tuple[tuple[str, np.ndarray], ...] = ()

    @classmethod
    def from_result(cls, result: PreprocessResult, source: str, name: str) -> CurrentInput:
        """From a preprocessing result (canvas or upload)."""
        image = np.ascontiguousarray(result.image, dtype=np.float32)
        return cls(image, source, name, _digest(image.tobytes()), tuple(result.stages.items()))

    @classmethod
    def from_image(cls, image: np.ndarray, source: str = "sample", name: str = "") -> CurrentInput:
        """From a ready 28×28 image in [0, 1] (or uint8), e.g. an MNIST test digit."""
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array / 255.0
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.shape != (28, 28):
            raise InvalidImageError(f"Expected a 28×28 image, got shape {array.shape}.")
        return cls(array, source, name, _digest(array.tobytes()), (("28×28", array),))

    def describe(self) -> str:
        """One line for captions, Markdown-safe (file names are escaped)."""
        if self.source == "canvas":
            return "your drawing"
        if self.source == "upload":
            return f"uploaded file “{escape_markdown(self.name)}”"
        return escape_markdown(self.name or self.source)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def current_input() -> CurrentInput | None:
    """The digit shared by all pages, or None before anything was drawn or uploaded."""
    value = st.session_state.get(INPUT_KEY)
    return value if isinstance(value, CurrentInput) else None


def set_current_input(value: CurrentInput | None) -> None:
    """Make ``value`` the digit every page inspects (None clears it)."""
    st.session_state[INPUT_KEY] = value


def require_input() -> CurrentInput:
    """The current input, or an explanation with a link to the Draw page and ``st.stop()``."""
    value = current_input()
    if value is None:
        st.info(
            "No digit yet: draw one or upload an image on the **Draw & predict** page, then come "
            "back here to inspect it.",
            icon=":material/draw:",
        )
        st.page_link(PAGES["Draw & predict"], label="Draw & predict", icon=":material/draw:")
        st.stop()
    return value


def take_canvas(image_data: np.ndarray | None) -> str:
    """Feed the canvas's RGBA ``image_data`` into the current input; return the canvas state.

    States: ``"untouched"`` (no stroke since the canvas was mounted: keep the current input, which
    may be an upload or an earlier drawing), ``"blank"`` (strokes were undone or cleared: nothing
    to predict, and a previous drawing is no longer current) or ``"drawn"``. Only a changed
    drawing is preprocessed again.
    """
    if image_data is None:
        return "untouched"
    digest = _digest(np.ascontiguousarray(image_data).tobytes())
    previous = st.session_state.get(CANVAS_STATE_KEY)
    if previous and previous[0] == digest:
        return previous[1]
    try:
        result = preprocess(image_data)
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
    upload still sitting in the box; its message stays visible while the file is there. A bad
    file never replaces the current input.
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
            state = (
                uploaded.file_id,
                "error",
                f"“{escape_markdown(name)}”: {escape_markdown(error)}",
            )
        else:
            if result.blank:
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
        st.info(state[2], icon=":material/crop_free:")


def canvas_initial_drawing(arrived: bool) -> dict | None:
    """The last drawing, to restore on the canvas when the Draw page is opened again.

    Fixed while the canvas stays mounted (a changing ``initial_drawing`` redraws the canvas),
    refreshed from the last drawing when the user ``arrived`` on the page (the canvas is mounted
    anew after a page switch). The restored drawing is sent back unchanged, so its digest matches
    and it does not displace an upload made after it.
    """
    snapshot_key = f"{CANVAS_DRAWING_KEY}.initial"
    if arrived or snapshot_key not in st.session_state:
        st.session_state[snapshot_key] = st.session_state.get(CANVAS_DRAWING_KEY)
    return st.session_state[snapshot_key]


def remember_drawing(json_data: dict | None) -> None:
    """Keep the canvas's Fabric.js JSON so the drawing survives a page switch."""
    if json_data is not None:
        st.session_state[CANVAS_DRAWING_KEY] = json_data


# ---------------------------------------------------------------------------------------------
# Shared widgets (their values survive page switches through a plain session-state key)


def _persisted_widget(widget: Any, key: str, default: Any, **kwargs: Any) -> Any:
    """Render ``widget`` with a value stored under ``key``, shared by every page that shows it.

    Streamlit ties a widget's state to the widget on one page and forgets it when a page without
    it runs, so the value lives under a plain key; it is written into the widget's own key
    (``<key>.widget``) before every render and copied back when the user changes it.
    """
    widget_key = f"{key}.widget"
    st.session_state.setdefault(key, default)
    st.session_state[widget_key] = st.session_state[key]

    def store() -> None:
        st.session_state[key] = st.session_state[widget_key]

    value = widget(key=widget_key, on_change=store, **kwargs)
    st.session_state[key] = value
    return value


def threshold_slider(*, sidebar: bool = False) -> float:
    """The rejection threshold, shared by the Draw and the Rejection pages."""
    target = st.sidebar if sidebar else st
    return float(
        _persisted_widget(
            target.slider,
            THRESHOLD_KEY,
            DEFAULT_THRESHOLD,
            label="Rejection threshold (minimum confidence)",
            min_value=0.0,
            max_value=1.0,
            step=0.01,
            help="Predictions whose top probability is below this are answered with "
            "“not sure / not a digit”. The same threshold is used on the Rejection page.",
        )
    )


def threshold() -> float:
    """The shared rejection threshold, for pages that use it without showing the slider."""
    return float(st.session_state.get(THRESHOLD_KEY, DEFAULT_THRESHOLD))


def model_picker(label: str = "Model") -> str:
    """One model for pages that inspect a single model (sidebar, shared between pages)."""
    variants = predictor_variants()
    stored = st.session_state.get(MODEL_KEY)
    if stored not in variants:
        st.session_state.pop(MODEL_KEY, None)
    return _persisted_widget(
        st.sidebar.selectbox,
        MODEL_KEY,
        variants[-1],
        label=label,
        options=variants,
        format_func=model_label,
    )


def models_picker() -> list[str]:
    """Several models at once (Draw page), shared between visits."""
    variants = predictor_variants()
    stored = st.session_state.get(MODELS_KEY)
    if stored is not None and not set(stored) <= set(variants):
        st.session_state.pop(MODELS_KEY, None)
    return list(
        _persisted_widget(
            st.multiselect,
            MODELS_KEY,
            list(variants),
            label="Models",
            options=variants,
            format_func=model_label,
        )
    )


def predictor_variants() -> list[str]:
    """Variants that loaded (raises ``CheckpointError`` when none did)."""
    predictor()
    return model_store().variants


def model_label(variant: str) -> str:
    """``cnn2 · 2 conv blocks``."""
    blocks = VARIANTS.index(variant) + 1 if variant in VARIANTS else "?"
    return f"{variant} · {blocks} conv block{'s' if blocks != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# Per-image computations (cached by image content)


def model_input(image: np.ndarray, normalization: Mapping[str, float]) -> torch.Tensor:
    """A 28×28 image in [0, 1] as the normalised ``[1, 1, 28, 28]`` tensor a model takes."""
    return to_input(torch.from_numpy(np.asarray(image, dtype=np.float32))[None], normalization)


@st.cache_data(max_entries=256, show_spinner=False)
def _probabilities(image: np.ndarray, directory: str, signature: tuple) -> dict[str, np.ndarray]:
    pred = _load_store(directory, signature).predictor
    # Predictor's per-variant locks are not the ones Captum calls hold (core.explain.model_lock):
    # take those as well, so no forward pass runs while another session's hooks are attached.
    with ExitStack() as stack:
        for model in pred.models.values():
            stack.enter_context(model_lock(model))
        predictions = pred.predict(image)
    return {v: np.asarray(p.probabilities, dtype=np.float64) for v, p in predictions.items()}


def probabilities(image: np.ndarray) -> dict[str, np.ndarray]:
    """Softmax probabilities ``[10]`` of every loaded model for one 28×28 image."""
    predictor()
    directory = checkpoint_dir()
    return _probabilities(image, directory, _directory_signature(directory))


def top_k(probs: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The ``k`` most probable digits with their probabilities."""
    order = np.argsort(probs)[::-1][:k]
    return [(int(d), float(probs[d])) for d in order]


@st.cache_data(max_entries=64, show_spinner=False)
def _activations(image: np.ndarray, variant: str, directory: str, signature: tuple) -> list:
    model, metadata = _loaded(variant, directory, signature)
    return activations(model, model_input(image, metadata["normalization"]))


def layer_activations(image: np.ndarray, variant: str) -> list:
    """Every conv block's feature maps (``core.explain.LayerActivation``) for one image."""
    directory = checkpoint_dir()
    return _activations(image, variant, directory, _directory_signature(directory))


def _explain(
    explainer: Callable[..., Any],
    image: np.ndarray,
    variant: str,
    method: str,
    target: int,
    layer: str | None,
    directory: str,
    signature: tuple,
) -> Any:
    """Run ``core.explain.attribute`` or ``core.sanity.cascading_randomization`` on one image."""
    model, metadata = _loaded(variant, directory, signature)
    norm = metadata["normalization"]
    return explainer(
        model, model_input(image, norm), method, target, layer=layer, normalization=norm
    )


@st.cache_data(max_entries=256, show_spinner=False)
def _attribution(
    image: np.ndarray,
    variant: str,
    method: str,
    target: int,
    layer: str | None,
    directory: str,
    signature: tuple,
) -> np.ndarray:
    return _explain(attribute, image, variant, method, target, layer, directory, signature)


def attribution(
    image: np.ndarray, variant: str, method: str, target: int, layer: str | None = None
) -> np.ndarray:
    """A Captum attribution map ``[28, 28]`` (cached per image, model, method, target, layer)."""
    directory = checkpoint_dir()
    return _attribution(
        image, variant, method, int(target), layer, directory, _directory_signature(directory)
    )


@st.cache_data(max_entries=32, show_spinner="Randomising the weights layer by layer…")
def _sanity(
    image: np.ndarray,
    variant: str,
    method: str,
    target: int,
    layer: str | None,
    directory: str,
    signature: tuple,
) -> list:
    return _explain(
        cascading_randomization, image, variant, method, target, layer, directory, signature
    )


def sanity_steps(
    image: np.ndarray, variant: str, method: str, target: int, layer: str | None = None
) -> list:
    """Cascading weight-randomisation steps (``core.sanity.SanityStep``) for one map (cached)."""
    directory = checkpoint_dir()
    return _sanity(
        image, variant, method, int(target), layer, directory, _directory_signature(directory)
    )


def last_conv_layer(variant: str) -> str:
    """Name of a model's last conv layer (the usual Grad-CAM layer)."""
    return conv_layer_names(model_and_metadata(variant)[0])[-1]


def forward_latency_ms(variant: str, image: np.ndarray, repeats: int = 7) -> float:
    """Median wall time (ms) of one forward pass of ``variant`` on ``image``: measured live."""
    model, metadata = model_and_metadata(variant)
    x = model_input(image, metadata["normalization"])
    times = []
    with model_lock(model), torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def selected_point(event: Any) -> dict[str, Any] | None:
    """The first selected point of a ``st.plotly_chart(on_select="rerun")`` event, if any."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    return dict(points[0]) if points else None


# ---------------------------------------------------------------------------------------------
# Error browser: the chosen confusion-matrix cell (shared by the Plotly selection and selectboxes)

ERR_TRUE_KEY = "dl.err.true"
ERR_PRED_KEY = "dl.err.pred"
ERR_VIEW_KEY = "dl.err.view"
ERR_ANY = "any"
ERR_CELL_VIEW = "Chosen cell or class"
ERR_CONFIDENT_VIEW = "Most confident mistakes"


def selected_cell() -> tuple[int, int] | None:
    """(true, predicted) chosen in the Error browser, when both are single digits."""
    true, pred = st.session_state.get(ERR_TRUE_KEY), st.session_state.get(ERR_PRED_KEY)
    return (true, pred) if isinstance(true, int) and isinstance(pred, int) else None


def apply_cell_selection(point: Mapping[str, Any] | None) -> None:
    """A clicked confusion-matrix cell becomes the selectboxes' choice (before they render).

    An off-diagonal cell selects (true, predicted); a diagonal cell selects the whole class
    (every mistake on that true digit), since the cell itself holds no mistakes.
    """
    if not point:
        return
    try:
        true, pred = round(float(point["y"])), round(float(point["x"]))
    except (KeyError, TypeError, ValueError):
        return
    if true in DIGITS and pred in DIGITS:
        st.session_state[ERR_TRUE_KEY] = true
        st.session_state[ERR_PRED_KEY] = ERR_ANY if pred == true else pred
        st.session_state[ERR_VIEW_KEY] = ERR_CELL_VIEW


# ---------------------------------------------------------------------------------------------
# Rejection, out-of-distribution scores and metrics tables


def selective_summary(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """What accepting ``max probability >= threshold`` does on the test set."""
    msp = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    keep = msp >= threshold
    accepted = int(keep.sum())
    errors = int((~correct).sum())
    return {
        "msp": msp,
        "total": len(labels),
        "accepted": accepted,
        "coverage": accepted / len(labels) if len(labels) else 0.0,
        "accuracy": float(correct[keep].mean()) if accepted else float("nan"),
        "overall_accuracy": float(correct.mean()) if len(labels) else float("nan"),
        "errors": errors,
        "errors_avoided": int((~correct & ~keep).sum()),
    }


def _set_scores(arrays: Mapping[str, np.ndarray], name: str) -> tuple | None:
    """(msp, energy, predicted digit) of one OOD set: from its logits, or precomputed scores."""
    logits = arrays.get(f"ood_{name}_logits")
    if logits is not None and logits.ndim == 2:
        logits = logits.astype(np.float64)
        return msp_score(logits), energy_score(logits), logits.argmax(axis=1)
    keys = [f"ood_{name}_{k}" for k in ("msp", "energy", "prediction")]
    if all(k in arrays for k in keys):
        return tuple(np.asarray(arrays[k]) for k in keys)
    return None


@st.cache_data(max_entries=8, show_spinner=False)
def _ood_scores(variant: str, directory: str, signature: tuple) -> dict[str, dict]:
    arrays = read_eval_file(variant, directory)
    names = [str(n) for n in arrays.get("ood_sets", [])]
    if not names or "logits" not in arrays:
        return {}
    in_logits = arrays["logits"].astype(np.float64)
    in_msp, in_energy = msp_score(in_logits), energy_score(in_logits)
    result = {}
    for name in names:
        scores = _set_scores(arrays, name)
        if scores is None:
            continue
        msp, energy, prediction = scores
        result[name] = {
            "msp": msp,
            "energy": energy,
            "auroc_msp": auroc(in_msp, msp),
            "auroc_energy": auroc(in_energy, energy),
            "prediction": prediction,
            "examples": arrays.get(f"ood_{name}_examples"),
        }
    return result


def ood_scores(variant: str) -> dict[str, dict]:
    """Per OOD set (as precomputed by ``core.precompute``): ``msp`` and ``energy`` scores, their
    AUROCs against the MNIST test set, a few ``examples`` and every image's ``prediction``."""
    directory = checkpoint_dir()
    return _ood_scores(variant, directory, _directory_signature(directory))


def risk_coverage_curve(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The precomputed risk-coverage curve of an evaluation file, else computed from it."""
    keys = ("threshold", "coverage", "accuracy", "risk")
    if all(f"risk_coverage_{k}" in arrays for k in keys):
        return {k: arrays[f"risk_coverage_{k}"] for k in keys}
    return risk_coverage(arrays["probabilities"], arrays["labels"])


def reliability(arrays: Mapping[str, np.ndarray]) -> tuple[dict, dict] | None:
    """Reliability-diagram bins before and after temperature scaling, if precomputed."""
    keys = ("count", "confidence", "accuracy")
    if "reliability_edges" not in arrays or not all(
        f"reliability_{p}{k}" in arrays for p in ("", "calibrated_") for k in keys
    ):
        return None
    edges = arrays["reliability_edges"]
    before = {"edges": edges, **{k: arrays[f"reliability_{k}"] for k in keys}}
    after = {"edges": edges, **{k: arrays[f"reliability_calibrated_{k}"] for k in keys}}
    return before, after


OOD_COLUMNS = {
    "rejected": st.column_config.ProgressColumn(
        "rejected at this threshold", format="percent", min_value=0.0, max_value=1.0
    ),
    "AUROC (MSP)": st.column_config.NumberColumn(format="%.4f"),
    "AUROC (energy)": st.column_config.NumberColumn(format="%.4f"),
}


def ood_table(ood: Mapping[str, dict], threshold: float) -> list[dict]:
    """Rows: each OOD set's share rejected at ``threshold`` and its AUROCs."""
    return [
        {
            "input": OOD_LABELS.get(name, name),
            "images": len(entry["msp"]),
            "rejected": rejection_rate(entry["msp"], threshold),
            "AUROC (MSP)": entry["auroc_msp"],
            "AUROC (energy)": entry["auroc_energy"],
        }
        for name, entry in ood.items()
    ]


METRICS_COLUMNS = {
    "parameters": st.column_config.NumberColumn(format="localized"),
    "test accuracy": st.column_config.NumberColumn(format="percent"),
    "ECE": st.column_config.NumberColumn(format="%.4f", help="Expected calibration error"),
    "ECE after temperature scaling": st.column_config.NumberColumn(format="%.4f"),
    "temperature": st.column_config.NumberColumn(format="%.3f"),
}
AUROC_COLUMNS = {
    OOD_LABELS[name]: st.column_config.NumberColumn(format="%.4f") for name in OOD_SETS
}


def metrics_row(variant: str) -> dict[str, Any]:
    """Params, accuracy and calibration of one model, for comparison tables."""
    meta = model_and_metadata(variant)[1]
    row: dict[str, Any] = {
        "model": variant,
        "parameters": meta["params"],
        "test accuracy": meta["test_accuracy"],
        "test errors": meta.get("test_errors"),
        "ECE": meta.get("test_ece"),
    }
    if "test_ece_scaled" in meta:
        row["ECE after temperature scaling"] = meta["test_ece_scaled"]
        row["temperature"] = meta.get("temperature")
    return row


def auroc_row(variant: str) -> dict[str, Any]:
    """AUROC of the maximum softmax probability against each out-of-distribution set."""
    return {"model": variant} | {
        OOD_LABELS.get(name, name): entry["auroc_msp"]
        for name, entry in ood_scores(variant).items()
    }
