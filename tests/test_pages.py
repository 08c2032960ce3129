"""AppTest for every dashboard page: a smoke test over all pages, then page-specific behaviour.

Inputs are injected through ``st.session_state`` (the shared current input) and through the real
``file_uploader`` widget. The models are the shipped checkpoints (loaded once per process by
``st.cache_resource``); MNIST-dependent assertions skip when the data set is absent.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from core.checkpoints import DEFAULT_DIRECTORY, read_metadata
from core.data import DataUnavailableError
from core.drawing import Stroke
from core.evalfile import read_eval_file
from core.held_out import SHAPES, draw
from core.models import VARIANTS
from core.preprocess import preprocess
from dashboard import loaders, navigation, sketchpad, state, widgets

ROOT = Path(__file__).resolve().parent.parent
APP_SCRIPT = ROOT / "dashboard" / "app.py"
PAGES = [spec.file for key, spec in navigation.PAGES.items() if key != "home"]
TIMEOUT = 90  # importing torch and loading three models takes seconds, not AppTest's default 3
CONV_LAYERS = {"cnn1": 1, "cnn2": 2, "cnn3": 3}
CHANNELS = (32, 64, 128)


# The Error browser's widget keys (private to its page).
ERR_TRUE_KEY, ERR_PRED_KEY, ERR_VIEW_KEY = "dl.err.true", "dl.err.pred", "dl.err.view"
ERR_CONFIDENT_VIEW = "Most confident mistakes"


def page(name: str) -> str:
    """The file of the page whose title contains ``name``."""
    (match,) = [spec.file for spec in navigation.PAGES.values() if name in spec.title]
    return match


# Strokes as the drawing pad sends them (pad pixels, an 18 px brush).
ONE_STROKE = Stroke(18.0, ((145.0, 45.0), (142.0, 140.0), (138.0, 240.0)))
SEVEN_STROKE = Stroke(18.0, ((70.0, 55.0), (200.0, 50.0), (160.0, 140.0), (125.0, 245.0)))


def draw_digit(kind: str, size: int = 280, width: int = 18) -> bytes:
    """A PNG of a hand-drawn-looking "1" or "7": black strokes on white, like the canvas."""
    image = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(image)
    if kind == "1":
        pen.line([(150, 40), (140, 240)], fill="black", width=width)
    elif kind == "7":
        pen.line([(70, 50), (200, 50), (120, 240)], fill="black", width=width, joint="curve")
    else:
        raise ValueError(kind)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_input(kind: str) -> state.CurrentInput:
    """The current input the Draw page would make from a drawn digit."""
    return state.CurrentInput.from_result(preprocess(draw_digit(kind)), "canvas", "canvas")


def make_app(page_path: str | None = None, current: state.CurrentInput | None = None) -> AppTest:
    """An AppTest of the dashboard, on ``page_path`` (else Home), with ``current`` injected."""
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    if current is not None:
        at.session_state[state.INPUT_KEY] = current
    if page_path is not None:
        at.switch_page(page_path)
    return at


def assert_clean(at: AppTest) -> None:
    """No exception element and no error box on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture(autouse=True)
def shipped(monkeypatch: pytest.MonkeyPatch, shipped_checkpoints: Path) -> Path:
    """Every test runs against the shipped checkpoints unless it points elsewhere."""
    monkeypatch.setenv(loaders.CHECKPOINTS_ENV_VAR, str(shipped_checkpoints))
    return shipped_checkpoints


# ------------------------------------------------------------------------------------ smoke


@pytest.mark.parametrize("page_path", [None, *PAGES], ids=["Home", *PAGES])
def test_every_page_renders_with_an_input(page_path: str | None) -> None:
    at = make_app(page_path, digit_input("7")).run()
    assert_clean(at)
    assert at.title, "every page has a title"
    if page_path is not None:
        assert not any("No digit yet" in i.value for i in at.info)


@pytest.mark.parametrize(
    "name", ["Activations", "Grad-CAM", "Compare"], ids=["activations", "gradcam", "compare"]
)
def test_inspection_pages_ask_for_a_digit_when_there_is_none(name: str) -> None:
    at = make_app(page(name)).run()
    assert not at.exception
    assert any("No digit yet" in i.value for i in at.info)


# ------------------------------------------------------------------------------------ Home


def test_home_lists_the_shipped_models_with_measured_figures() -> None:
    at = make_app().run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["model"]) == list(VARIANTS)
    for variant in VARIANTS:
        meta = read_metadata(variant, DEFAULT_DIRECTORY)
        row = table[table["model"] == variant].iloc[0]
        assert row["parameters"] == meta["params"]
        assert row["test accuracy"] == pytest.approx(meta["test_accuracy"])
    assert len(at.expander) == len(VARIANTS)  # one model card each


# ------------------------------------------------------------------------------------ Draw


def test_draw_page_without_input_asks_for_a_digit_and_predicts_nothing() -> None:
    at = make_app(page("Draw")).run()
    assert_clean(at)
    assert any("Draw a digit" in i.value for i in at.info)
    assert not at.metric


@pytest.mark.parametrize("kind", ["1", "7"])
def test_draw_page_predicts_an_injected_digit_with_every_model(kind: str) -> None:
    at = make_app(page("Draw"), digit_input(kind)).run()
    assert_clean(at)
    assert metric_values(at) == dict.fromkeys(VARIANTS, kind)
    assert len(at.caption) >= len(VARIANTS)
    assert any(re.search(rf"\b{kind}: \d+\.\d%", c.value) for c in at.caption)  # top-3 line


def test_uploading_a_png_makes_it_the_current_digit() -> None:
    at = make_app(page("Draw")).run()
    at.file_uploader(key=state.UPLOAD_KEY).upload("seven.png", draw_digit("7"), "image/png").run()
    assert_clean(at)
    assert metric_values(at) == dict.fromkeys(VARIANTS, "7")
    current = at.session_state[state.INPUT_KEY]
    assert current.source == "upload" and current.name == "seven.png"
    assert current.image.shape == (28, 28)
    assert [name for name, _ in current.stages] == [
        "decoded",
        "ink",
        "cropped",
        "fitted",
        "centred",
    ]


def _tiff_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buffer, format="TIFF")
    return buffer.getvalue()


def _huge_header_png() -> bytes:
    """A valid PNG of 1×1 whose IHDR claims 50000×50000 (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


BAD_UPLOADS = {
    "empty": b"",
    "text": b"hello, I am not an image",
    "tiff_renamed": _tiff_bytes(),
    "truncated": draw_digit("7")[:300],
    "huge_header": _huge_header_png(),
}


@pytest.mark.parametrize("content", BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_bad_uploads_clear_the_old_predictions_and_say_why(content: bytes) -> None:
    at = make_app(page("Draw"))
    drawing = [SEVEN_STROKE]
    at.session_state[sketchpad.STROKES_KEY] = drawing
    at.run()
    assert metric_values(at)["cnn3"] == "7"
    at.file_uploader(key=state.UPLOAD_KEY).upload("digit.png", content, "image/png").run()
    assert not at.exception
    assert len(at.error) == 1 and "cannot be used" in at.error[0].value
    assert at.session_state[state.INPUT_KEY] is None  # no stale answer for the new file
    assert metric_values(at) == {}
    assert at.session_state[sketchpad.STROKES_KEY] == drawing  # the drawing stays on the pad


def test_blank_upload_says_there_is_no_digit() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(buffer, format="PNG")
    at = make_app(page("Draw")).run()
    at.file_uploader(key=state.UPLOAD_KEY).upload("white.png", buffer.getvalue(), "image/png").run()
    assert_clean(at)
    assert any("blank" in w.value for w in at.warning)
    assert state.INPUT_KEY not in at.session_state or at.session_state[state.INPUT_KEY] is None


def test_hostile_file_names_are_shown_as_plain_text() -> None:
    name = "![x](http://evil.example/t.png)<script>alert(1)</script>**bold**.png"
    at = make_app(page("Draw")).run()
    at.file_uploader(key=state.UPLOAD_KEY).upload(name, b"junk", "image/png").run()
    message = at.error[0].value
    assert "](http" not in message and "<script>" not in message and "**bold" not in message
    assert r"\!\[x\]\(http" in message  # escaped, so Markdown shows the characters as typed


def drawn_smiley() -> state.CurrentInput:
    """A smiley drawn on the canvas: not a digit."""
    canvas = draw(SHAPES["smiley"], np.random.default_rng(3), brush=18)
    return state.CurrentInput.from_result(preprocess(canvas), "canvas", "canvas")


def test_a_drawn_smiley_is_answered_not_a_digit_and_a_seven_is_accepted() -> None:
    at = make_app(page("Draw"), drawn_smiley()).run()
    assert_clean(at)
    shown = metric_values(at)
    assert shown["cnn2"] == shown["cnn3"] == "?"  # the deeper CNNs turn the smiley away
    assert any("Not a digit, or too unsure" in w.value for w in at.warning)
    seven = make_app(page("Draw"), digit_input("7")).run()
    assert_clean(seven)
    shown = metric_values(seven)
    assert all(shown[v] == "7" for v in ("cnn1", "cnn2", "cnn3"))


def test_keeping_every_digit_switches_rejection_off() -> None:
    at = make_app(page("Draw"), drawn_smiley()).run()
    at.slider(key=f"{widgets.KEEP_KEY}.widget").set_value(100.0).run()
    assert_clean(at)
    assert "?" not in metric_values(at).values()
    assert any("Rejection is off" in c.value for c in at.caption)


def test_operating_point_is_shared_with_the_rejection_page() -> None:
    at = make_app(page("Draw"), digit_input("7")).run()
    at.slider(key=f"{widgets.KEEP_KEY}.widget").set_value(95.0).run()
    at.switch_page(page("Rejection")).run()
    assert_clean(at)
    assert at.slider(key=f"{widgets.KEEP_KEY}.widget").value == pytest.approx(95.0)


# ------------------------------------------------------------------------------------ Activations


@pytest.mark.parametrize("variant", ["cnn1", "cnn2", "cnn3"])
def test_activations_show_every_conv_layer_with_its_feature_maps(variant: str) -> None:
    at = make_app(page("Activations"), digit_input("7"))
    at.session_state[widgets.MODEL_KEY] = variant
    at.run()
    assert_clean(at)
    counts = [
        int(m.group(1))
        for md in at.markdown
        if (m := re.fullmatch(r"\*\*(\d+) feature maps\*\* of .*", md.value))
    ]
    assert counts == list(CHANNELS[: CONV_LAYERS[variant]])
    assert len(at.number_input) == CONV_LAYERS[variant]  # one channel picker per layer


@pytest.mark.parametrize("variant", ["logreg", "mlp"])
def test_pages_that_need_conv_layers_say_so_for_the_baselines(variant: str) -> None:
    at = make_app(page("Activations"), digit_input("7"))
    at.session_state[widgets.MODEL_KEY] = variant
    at.run()
    assert_clean(at)
    assert any("has no conv layers" in i.value and "cnn3" in i.value for i in at.info)
    cam = make_app(page("Grad-CAM"), digit_input("7"))
    cam.session_state[widgets.MODEL_KEY] = variant
    cam.run()
    assert_clean(cam)
    assert any("no conv layers" in i.value for i in cam.info)
    assert not [s for s in cam.selectbox if s.label.startswith("Conv layer")]


# ------------------------------------------------------------------------------------ Grad-CAM


def test_gradcam_page_defaults_to_the_predicted_class_and_shows_the_sanity_check() -> None:
    at = make_app(page("Grad-CAM"), digit_input("7"))
    at.session_state[widgets.MODEL_KEY] = "cnn2"
    at.run()
    assert_clean(at)
    target = next(s for s in at.selectbox if s.label == "Target class")
    assert target.value == 7
    layer = next(s for s in at.selectbox if s.label == "Conv layer for Grad-CAM and HiResCAM")
    assert layer.options == ["features.block1.conv", "features.block2.conv"]
    captions = at.image[-1].captions
    # original + one step per learned layer (2 conv + 2 linear), each with its correlation
    assert captions[0] == "trained model" and len(captions) == 5
    assert all(re.search(r"ρ [+-]\d\.\d\d$", c) for c in captions[1:])

    target.set_value(3).run()
    assert_clean(at)


# ------------------------------------------------------------------------------------ Compare


def test_compare_page_shows_all_models_agreeing_on_a_clear_digit() -> None:
    at = make_app(page("Compare"), digit_input("1")).run()
    assert_clean(at)
    assert any("agree" in s.value and "1" in s.value for s in at.success)
    assert [m.value for m in at.metric] == ["1"] * len(VARIANTS)
    table = at.dataframe[0].value
    assert list(table["model"]) == list(VARIANTS)
    assert {"parameters", "test accuracy", "ECE"} <= set(table.columns)


# ------------------------------------------------------------------------------------ Errors


def _error_app(variant: str = "cnn1") -> AppTest:
    at = make_app(page("Error"))
    at.session_state[widgets.MODEL_KEY] = variant
    return at.run()


def test_error_browser_gallery_shows_the_chosen_cell(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGIT_LENS_DATA", str(data_dir))
    evaluation = read_eval_file("cnn1", DEFAULT_DIRECTORY)
    labels, probs = evaluation.labels, evaluation.calibrated_probabilities
    preds = probs.argmax(1)
    mistakes = np.flatnonzero(preds != labels)
    # the most populated off-diagonal cell
    cells = {}
    for i in mistakes:
        cells.setdefault((int(labels[i]), int(preds[i])), []).append(i)
    (true, pred), members = max(cells.items(), key=lambda kv: len(kv[1]))
    expected = sorted(members, key=lambda i: -probs[i].max())[:30]

    at = _error_app()
    at.selectbox(key=ERR_TRUE_KEY).set_value(true)
    at.selectbox(key=ERR_PRED_KEY).set_value(pred).run()
    assert_clean(at)
    assert any(f"**{len(members)} mistakes**" in md.value for md in at.markdown)
    captions = _gallery_captions(at)
    assert [int(c.split(":")[0].lstrip("#")) for c in captions] == expected
    assert all(f": {true} → {pred} (" in c for c in captions)


def _gallery_captions(at: AppTest) -> list[str]:
    """Captions of the mistakes gallery (``#index: true → predicted (confidence)``)."""
    return next(
        list(image.captions)
        for image in at.image
        if image.captions and all(c.startswith("#") and "→" in c for c in image.captions)
    )


def test_error_browser_most_confident_mistakes(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIGIT_LENS_DATA", str(data_dir))
    evaluation = read_eval_file("cnn3", DEFAULT_DIRECTORY)
    probs, labels = evaluation.calibrated_probabilities, evaluation.labels
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    most = wrong[np.argmax(probs[wrong].max(1))]
    at = _error_app("cnn3")
    at.session_state[ERR_VIEW_KEY] = ERR_CONFIDENT_VIEW
    at.run()
    assert_clean(at)
    assert _gallery_captions(at)[0].startswith(f"#{most}:")


def test_error_browser_without_mnist_still_shows_the_matrix(monkeypatch) -> None:
    def unavailable() -> None:
        raise DataUnavailableError("MNIST is not here (test).")

    monkeypatch.setattr(loaders, "mnist_test", unavailable)
    at = _error_app()
    assert not at.exception and not at.error
    assert any("not available" in i.value for i in at.info)
    assert at.dataframe, "per-class table and the mistakes table still render"


# ------------------------------------------------------------------------------------ Rejection


def _kept_share(at: AppTest) -> float:
    value = metric_values(at)["MNIST test digits kept"]
    return float(value.rstrip("%")) / 100


def test_rejection_slider_moves_the_kept_share_in_its_own_units() -> None:
    at = make_app(page("Rejection"))
    at.session_state[widgets.MODEL_KEY] = "cnn2"
    at.run()
    slider = at.slider(key=f"{widgets.KEEP_KEY}.widget")
    evaluation = read_eval_file("cnn2", DEFAULT_DIRECTORY)
    confidence = evaluation.calibrated_probabilities.max(axis=1)
    predictor = loaders.predictor()
    shares = []
    for keep in (100.0, 99.0, 95.0):
        slider.set_value(keep).run()
        assert_clean(at)
        shares.append(_kept_share(at))
        threshold = predictor.threshold_for("cnn2", keep / 100)
        assert shares[-1] == pytest.approx((confidence >= threshold).mean(), abs=6e-5)
        assert shares[-1] == pytest.approx(keep / 100, abs=0.01)  # validation and test agree
    assert shares[0] == 1.0 and shares[0] >= shares[1] >= shares[2]


# ------------------------------------------------------------------------------------ bad checkpoints


def _copy_checkpoints(tmp_path: Path) -> Path:
    target = tmp_path / "checkpoints"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    return target


def test_missing_checkpoints_give_an_error_not_a_traceback(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(loaders.CHECKPOINTS_ENV_VAR, str(tmp_path / "nowhere"))
    for page_path in (None, page("Draw")):
        at = make_app(page_path, digit_input("1")).run()
        assert not at.exception
        assert any("could not be loaded" in e.value for e in at.error)


def test_one_tampered_checkpoint_leaves_the_others_usable(monkeypatch, tmp_path: Path) -> None:
    directory = _copy_checkpoints(tmp_path)
    weights = directory / "cnn2.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-10] ^= 0xFF
    weights.write_bytes(bytes(blob))
    monkeypatch.setenv(loaders.CHECKPOINTS_ENV_VAR, str(directory))
    at = make_app(page("Draw"), digit_input("1")).run()
    assert not at.exception and not at.error
    assert any("cnn2" in w.value and "sha256" in w.value for w in at.warning)
    shown = metric_values(at)
    assert "cnn2" not in shown and shown["cnn1"] == shown["cnn3"] == "1"


# ------------------------------------------------------------------------------------ state, links


def test_undo_and_clear_buttons_edit_the_drawing_on_the_pad() -> None:
    at = make_app(page("Draw"))
    at.session_state[sketchpad.STROKES_KEY] = [ONE_STROKE, SEVEN_STROKE]
    at.run()
    assert metric_values(at)["cnn3"] != "1"  # two strokes on top of each other
    at.button(key="dl.draw.undo").click().run()
    assert at.session_state[sketchpad.STROKES_KEY] == [ONE_STROKE]
    assert at.session_state[sketchpad.GENERATION_KEY] == 1  # the pad is told to redraw
    assert metric_values(at)["cnn3"] == "1"  # the drawing before the last stroke is predicted
    at.button(key="dl.draw.clear").click().run()
    assert at.session_state[sketchpad.STROKES_KEY] == []
    assert at.session_state[state.INPUT_KEY] is None and metric_values(at) == {}
    assert at.button(key="dl.draw.clear").disabled and at.button(key="dl.draw.undo").disabled


def test_a_test_digit_chosen_elsewhere_shows_on_the_draw_page_with_its_label() -> None:
    image = np.zeros((28, 28), np.float32)
    image[6:22, 13:16] = 1.0
    sample = state.CurrentInput.from_image(image, "sample", "MNIST test image #5", 1, 5)
    at = make_app(page("Draw"), sample).run()
    assert_clean(at)
    assert any("MNIST test image \\#5" in i.value and "true label" in i.value for i in at.info)


def test_a_link_sets_model_operating_point_and_is_kept_up_to_date() -> None:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params["model"] = "cnn2"
    at.query_params["keep"] = "95"
    at.query_params["test"] = "not a number"
    at.switch_page(page("Rejection")).run()
    assert_clean(at)
    assert at.session_state[widgets.MODEL_KEY] == "cnn2"
    assert at.slider(key=f"{widgets.KEEP_KEY}.widget").value == pytest.approx(95.0)
    at.slider(key=f"{widgets.KEEP_KEY}.widget").set_value(99.0).run()
    assert at.query_params["keep"] == ["99"] or at.query_params["keep"] == "99"
    assert "test" not in at.query_params


def test_draw_page_offers_the_input_and_predictions_for_download() -> None:
    at = make_app(page("Draw"), digit_input("7")).run()
    labels = [b.label for b in at.get("download_button")]
    assert "Download the 28×28 input (PNG)" in labels
    assert "Download the predictions (JSON)" in labels
