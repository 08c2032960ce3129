"""core.preprocess: the MNIST recipe, every bad-input row of ARCHITECTURE.md, and its invariants."""

from __future__ import annotations

import gc
import io
import subprocess
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from scipy import ndimage

from core import preprocess as pp
from core.decode import WORK_MAX_SIDE
from core.inputs import MNIST_NORMALIZATION
from core.preprocess import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    InvalidImageError,
    PreprocessResult,
    decode_image,
    preprocess,
)
from core.strokes import FRAME_CENTRE, STROKE_GRID, bounding_box, normalise_strokes, stroke_widths
from tests.imagefactory import (
    EPS_BYTES,
    canvas_rgba,
    encode,
    paper_photo,
    png_claiming,
    stroke_mask,
)

STAGES = ["decoded", "ink", "cropped", "fitted", "centred"]


def seven_ink(**kwargs) -> np.ndarray:
    return stroke_mask(7, **kwargs)


def gray_image(ink: np.ndarray, dark_on_light: bool = True) -> Image.Image:
    """An L image of ``ink`` (black on white by default)."""
    values = 1.0 - ink if dark_on_light else ink
    return Image.fromarray(np.rint(values * 255).astype(np.uint8), "L")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The 28×28 result for a black-on-white 7: what every equivalent input should give."""
    result = preprocess(gray_image(seven_ink()))
    assert not result.blank
    return result.image


def assert_valid(result: PreprocessResult) -> None:
    """The result contract: finite 28×28 float32 in [0, 1], matching tensor, all stages."""
    assert isinstance(result, PreprocessResult)
    assert result.image.shape == (28, 28) and result.image.dtype == np.float32
    assert np.isfinite(result.image).all()
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert tuple(result.tensor.shape) == (1, 1, 28, 28) and result.tensor.dtype == torch.float32
    assert torch.isfinite(result.tensor).all()
    assert list(result.stages) == STAGES
    assert result.stages["decoded"].dtype == np.uint8
    assert result.stages["decoded"].ndim == 2 or result.stages["decoded"].shape[2] == 3
    if result.blank:
        assert not result.image.any()
    else:
        assert result.image.max() > 0.5


def centre_of_mass_ok(image: np.ndarray) -> bool:
    """Centre of mass at MNIST's centre (±0.5 px), unless centring was clamped at a border."""
    rows, cols = np.nonzero(image)
    com = ndimage.center_of_mass(image)
    for axis, (low, high) in enumerate(((rows.min(), rows.max()), (cols.min(), cols.max()))):
        clamped = low == 0 or high == 27
        if abs(com[axis] - FRAME_CENTRE) > 0.5 + 1e-3 and not clamped:
            return False
    return True


def similar(
    a: np.ndarray, b: np.ndarray, tolerance: float = 0.04, correlation: float = 0.9
) -> bool:
    """Mean absolute difference below ``tolerance`` and pixel correlation above ``correlation``."""
    return (
        float(np.abs(a - b).mean()) < tolerance
        and np.corrcoef(a.ravel(), b.ravel())[0, 1] > correlation
    )


def similar_up_to_one_pixel(a: np.ndarray, b: np.ndarray) -> bool:
    """Similar after the best shift by at most one pixel each way.

    Centring moves by whole pixels (as MNIST did), so a rounding flip may shift by one.
    """
    return any(
        similar(np.roll(a, (dy, dx), axis=(0, 1)), b, 0.04, 0.85)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


# --------------------------------------------------------------------------- the recipe


def test_recipe_fit_20_and_centre_of_mass(reference: np.ndarray) -> None:
    result = preprocess(gray_image(seven_ink()))
    fitted = result.stages["fitted"]
    assert max(fitted.shape) == 20
    assert abs(fitted.shape[1] / fitted.shape[0] - 140 / 200) < 0.1  # aspect ratio kept
    rows, cols = np.nonzero(result.image > 0.05)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
    assert centre_of_mass_ok(result.image)
    assert result.image.max() == pytest.approx(1.0, abs=0.02)
    assert result.stages["decoded"].shape == (280, 280)
    assert result.stages["cropped"].shape[0] > 150


@pytest.mark.parametrize(("pen", "like"), [(3, 11), (60, 33)])
def test_stroke_width_is_brought_into_mnist_range(pen: int, like: int, monkeypatch) -> None:
    """A hairline comes out like MNIST's thinnest pens, a fat brush like its thick ones.

    On this 200 px tall 7, an 11 px pen is MNIST's thin end (5th percentile), a 40 px pen its
    thick end (95th) and a 33 px pen its 90th percentile, where wider strokes are thinned to.
    """
    drawing = canvas_rgba(seven_ink(width=pen))
    result = preprocess(drawing).image
    edge = preprocess(canvas_rgba(seven_ink(width=like))).image
    assert 0.85 < result.sum() / edge.sum() < 1.15
    assert similar_up_to_one_pixel(result, edge)
    monkeypatch.setattr(pp, "NORMALISE_STROKES", False)
    plain = preprocess(drawing).image
    assert abs(np.log(plain.sum() / edge.sum())) > max(
        np.log(1.25), 2 * abs(np.log(result.sum() / edge.sum()))
    )


@pytest.mark.parametrize(("pen", "width"), [(40, None), (60, 10.0), (80, 10.0)])
def test_only_strokes_wider_than_mnists_are_thinned_to_its_90th_percentile(
    pen: int, width: float | None
) -> None:
    """On the stroke grid a 40 px pen is 12 wide (MNIST's 95th percentile) and left alone; 60 and
    80 px pens (16 and 20 wide) come out 10 wide, MNIST's 90th percentile."""
    ink = seven_ink(width=pen)
    top, bottom, left, right = bounding_box(ink > 0)
    cropped = ink[top:bottom, left:right].astype(np.float32)
    thinned = normalise_strokes(cropped)
    if width is None:
        assert thinned is cropped
    else:
        assert max(thinned.shape) <= STROKE_GRID
        assert np.median(stroke_widths(thinned > 0.5)) == pytest.approx(width, abs=1.0)


def test_mnist_format_upload_is_reproduced() -> None:
    """A digit already in MNIST's format comes back (almost) unchanged."""
    ink = stroke_mask(4, size=(28, 28), box=(6, 4, 20, 24), width=2.6, supersample=8)
    digit = preprocess(ink).image  # an MNIST-style digit: white on black, 20 px, centred
    again = preprocess(np.rint(digit * 255).astype(np.uint8))
    assert np.abs(again.image - digit).mean() < 0.005
    assert np.abs(again.image - digit).max() < 0.05


def test_tensor_uses_the_given_normalization(reference: np.ndarray) -> None:
    norm = {"mean": 0.2, "std": 0.5}
    result = preprocess(gray_image(seven_ink()), norm)
    expected = (torch.from_numpy(result.image) - 0.2) / 0.5
    assert torch.allclose(result.tensor[0, 0], expected)
    default = preprocess(gray_image(seven_ink()))
    mean, std = MNIST_NORMALIZATION["mean"], MNIST_NORMALIZATION["std"]
    assert torch.allclose(default.tensor[0, 0], (torch.from_numpy(default.image) - mean) / std)
    assert torch.allclose(result.normalized(MNIST_NORMALIZATION), default.tensor)


def test_blank_tensor_is_the_black_baseline_not_mid_grey() -> None:
    result = preprocess(None, {"mean": 0.13, "std": 0.31})
    assert result.blank
    assert torch.allclose(result.tensor, torch.full((1, 1, 28, 28), (0 - 0.13) / 0.31))


def test_invalid_normalization_is_refused() -> None:
    with pytest.raises(ValueError, match="std"):
        preprocess(None, {"mean": 0.1, "std": 0.0})


def test_pillow_bomb_guard_is_never_looser_than_ours() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= MAX_PIXELS


# --------------------------------------------------------------------------- canvas input


@pytest.mark.parametrize("color", [(0, 0, 0), (255, 255, 255), (200, 30, 30), (30, 60, 220)])
def test_transparent_canvas_ink_is_in_alpha_whatever_the_stroke_colour(
    color: tuple[int, int, int], reference: np.ndarray
) -> None:
    canvas = canvas_rgba(seven_ink(), transparent=True, color=color)
    result = preprocess(canvas)
    assert_valid(result)
    assert not result.blank
    assert np.abs(result.image - reference).max() < 0.02


def test_white_background_canvas_matches_transparent_one(reference: np.ndarray) -> None:
    result = preprocess(canvas_rgba(seven_ink(), transparent=False))
    assert np.abs(result.image - reference).max() < 0.02


@pytest.mark.parametrize("transparent", [True, False])
def test_bold_digit_covering_most_of_the_canvas(transparent: bool) -> None:
    """Ink covering over half the canvas is still ink: the background is read from the border."""
    ink = stroke_mask(0, box=(40, 20, 240, 262), width=90)
    assert ink.mean() > 0.5
    result = preprocess(canvas_rgba(ink, transparent=transparent))
    assert_valid(result)
    assert not result.blank
    assert result.image[14, 14] < 0.2  # the hole of the 0 stays a hole, not ink
    assert result.image[14, 6:22].max() > 0.9


def test_photo_with_transparent_margins_is_a_picture_not_a_drawing() -> None:
    photo = paper_photo(seven_ink(), seed=3, gradient=0.1)
    upright = preprocess(photo)
    padded = np.zeros((400, 400, 4), np.uint8)
    padded[60:340, 60:340, :3] = photo
    padded[60:340, 60:340, 3] = 255
    result = preprocess(padded)
    assert not result.blank
    assert similar(result.image, upright.image, 0.03)


def test_canvas_before_first_stroke_and_cleared_canvas_are_blank() -> None:
    assert preprocess(None).blank
    cleared = np.zeros((280, 280, 4), np.uint8)
    result = preprocess(cleared)
    assert_valid(result)
    assert result.blank
    white = np.full((280, 280, 4), 255, np.uint8)
    assert preprocess(white).blank


def test_specks_far_from_the_digit_are_ignored(reference: np.ndarray) -> None:
    ink = seven_ink()
    ink[250:254, 10:14] = 1.0  # a tap of the pen in a corner
    ink[5:7, 270:272] = 1.0
    result = preprocess(canvas_rgba(ink))
    assert np.abs(result.image - reference).max() < 0.02


def test_tiny_speck_alone_is_blank() -> None:
    ink = np.zeros((280, 280), np.float32)
    ink[100:103, 100:103] = 1.0
    assert preprocess(canvas_rgba(ink)).blank


def test_stages_show_the_pipeline() -> None:
    result = preprocess(canvas_rgba(seven_ink()))
    decoded = result.stages["decoded"]
    assert decoded.shape == (280, 280, 3)
    assert decoded[0, 0].tolist() == [255, 255, 255]  # transparent shown on white
    assert decoded[45, 140].tolist() == [0, 0, 0]  # the 7's top bar
    ink = result.stages["ink"]
    assert ink.shape == (280, 280) and ink[45, 140] == pytest.approx(1.0) and ink[0, 0] == 0
    assert result.stages["cropped"].shape == (
        np.ptp(np.nonzero(ink > 0.1)[0]) + 1,
        np.ptp(np.nonzero(ink > 0.1)[1]) + 1,
    )
    assert np.array_equal(result.stages["centred"], result.image)


# --------------------------------------------------------------------------- array inputs


@pytest.mark.parametrize(
    "convert",
    [
        lambda ink: np.rint((1 - ink) * 255).astype(np.uint8),
        lambda ink: (1 - ink).astype(np.float32),
        lambda ink: (1 - ink).astype(np.float64)[:, :, None],
        lambda ink: np.rint((1 - ink) * 65535).astype(np.uint16),
        lambda ink: np.repeat(np.rint((1 - ink) * 255).astype(np.uint8)[:, :, None], 3, axis=2),
        lambda ink: ink > 0.5,
        lambda ink: np.rint(ink * 255).astype(np.int64),
    ],
    ids=["uint8", "float32", "float64-HW1", "uint16", "rgb", "bool", "int64"],
)
def test_array_inputs(convert, reference: np.ndarray) -> None:
    result = preprocess(convert(seven_ink()))
    assert_valid(result)
    assert similar(result.image, reference, 0.03)


def test_float_array_with_nan_is_not_a_crash() -> None:
    values = 1.0 - seven_ink()
    values[:5, :5] = np.nan
    values[-3:, -3:] = np.inf
    assert_valid(preprocess(values))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 5), np.uint8), "non-empty"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((2, 2, 2, 2), np.uint8), "non-empty"),
        (np.array([["a", "b"]]), "numbers"),
        (np.zeros((3, 3), np.complex64), "real"),
    ],
)
def test_bad_arrays(array: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        preprocess(array)


def test_wrong_python_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        preprocess("digit.png")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad input (ARCHITECTURE.md)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text, not a picture\n", "not a supported image format"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML file, which is not a supported"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG/XML file, which is not a supported"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "PDF file, which is not a supported"),
        (bytes(range(256)) * 4, "not a supported image format"),
    ],
    ids=["empty", "text", "html", "svg", "pdf", "binary"],
)
def test_non_image_bytes(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        preprocess(data)


def test_tiff_renamed_png_is_refused() -> None:
    tiff = encode(gray_image(seven_ink()), "TIFF")
    with pytest.raises(
        InvalidImageError, match=r"TIFF file, which is not a supported image format"
    ):
        decode_image(tiff)


def test_eps_renamed_png_is_refused_without_running_ghostscript(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_subprocess(*args, **kwargs):
        raise AssertionError("a subprocess was started while decoding an upload")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(subprocess, "check_call", no_subprocess)
    with pytest.raises(InvalidImageError, match=r"EPS file, which is not a supported image format"):
        decode_image(EPS_BYTES)


def test_file_over_the_size_limit() -> None:
    data = encode(gray_image(seven_ink()), "PNG")
    data += b"\x00" * (MAX_UPLOAD_BYTES + 1 - len(data))
    with pytest.raises(InvalidImageError, match=r"more than the limit of 8 MB"):
        preprocess(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [50_000, 7_000])
def test_png_header_claiming_huge_size_fails_before_decoding(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InvalidImageError, match="megapixels"):
        preprocess(png_claiming(side, side))


def test_array_over_the_pixel_limit() -> None:
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (7000, 7000), (0, 0))
    with pytest.raises(InvalidImageError, match="megapixels"):
        preprocess(big)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_files(fmt: str) -> None:
    data = encode(gray_image(seven_ink()).convert("RGB"), fmt)
    with pytest.raises(InvalidImageError, match=r"damaged or truncated|not a supported"):
        preprocess(data[: len(data) * 2 // 3])


def test_truncated_png_names_the_problem() -> None:
    data = encode(gray_image(seven_ink()), "PNG")
    with pytest.raises(InvalidImageError, match=r"PNG file is damaged or truncated"):
        preprocess(data[: len(data) // 2])


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"])
@pytest.mark.parametrize("value", [0, 255])
def test_one_pixel_image_is_blank(mode: str, value: int) -> None:
    image = Image.new("L", (1, 1), value).convert(mode)
    result = preprocess(image)
    assert_valid(result)
    assert result.blank


@pytest.mark.parametrize("shape", [(3, 1000), (1000, 3)])
def test_extreme_aspect_ratio_line(shape: tuple[int, int]) -> None:
    line = np.full(shape, 255, np.uint8)
    if shape[0] == 3:
        line[1, 100:900] = 0
    else:
        line[100:900, 1] = 0
    result = preprocess(encode(Image.fromarray(line), "PNG"))
    assert_valid(result)
    assert not result.blank
    fitted = result.stages["fitted"]
    assert max(fitted.shape) == 20 and min(fitted.shape) == 1
    assert centre_of_mass_ok(result.image)


def test_animated_gif_uses_the_first_frame(reference: np.ndarray) -> None:
    first = gray_image(seven_ink())
    second = gray_image(stroke_mask(0))
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    result = preprocess(data)
    assert np.abs(result.image - reference).max() < 0.02


def test_mpo_uses_the_first_frame(reference: np.ndarray) -> None:
    first = gray_image(seven_ink()).convert("RGB")
    second = gray_image(stroke_mask(0)).convert("RGB")
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    assert decode_image(data).format == "MPO"
    assert similar(preprocess(data).image, reference, 0.02)


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_90),
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_rotated_photo_is_turned_upright(orientation: int, stored_as, reference) -> None:
    upright = Image.fromarray(paper_photo(seven_ink(size=(280, 280))))
    upright_result = preprocess(encode(upright, "JPEG", quality=92))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = upright.transpose(stored_as)
    data = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    assert decode_image(data).size == upright.size
    result = preprocess(data)
    assert similar(result.image, upright_result.image, 0.03)
    assert similar(result.image, reference, 0.06)


def test_cmyk_jpeg(reference: np.ndarray) -> None:
    cmyk = gray_image(seven_ink()).convert("RGB").convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    assert decode_image(data).mode == "CMYK"
    assert similar(preprocess(data).image, reference, 0.03)


def test_sixteen_bit_png_is_scaled_not_clipped(reference: np.ndarray) -> None:
    values = np.rint((1 - seven_ink()) * 65535).astype(np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    decoded = decode_image(data)
    assert decoded.mode.startswith("I;16")
    result = preprocess(data)
    assert not result.blank
    assert np.abs(result.image - reference).max() < 0.02


def test_sixteen_bit_png_without_full_range(reference: np.ndarray) -> None:
    values = np.rint(52000 - 50000 * seven_ink()).astype(np.uint16)
    result = preprocess(encode(Image.fromarray(values), "PNG"))
    assert np.abs(result.image - reference).max() < 0.02


@pytest.mark.parametrize("mode", ["LA", "RGBA", "PA"])
def test_transparency_modes(mode: str, reference: np.ndarray) -> None:
    ink = seven_ink()
    alpha = np.rint(ink * 255).astype(np.uint8)
    black = np.zeros_like(alpha)
    if mode == "PA":
        image = Image.fromarray(black, "L").convert("P").convert("PA")
        image.putalpha(Image.fromarray(alpha, "L"))
    else:
        image = Image.fromarray(np.dstack([black, alpha]), "LA").convert(mode)
    assert image.mode == mode
    assert np.abs(preprocess(image).image - reference).max() < 0.03


def test_palette_png_and_gif_with_transparency_index(reference: np.ndarray) -> None:
    ink = seven_ink() > 0.5
    palette_index = np.where(ink, 1, 0).astype(np.uint8)
    image = Image.fromarray(palette_index, "P")
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    for fmt in ("PNG", "GIF"):
        data = encode(image, fmt, transparency=0)
        decoded = decode_image(data)
        assert decoded.mode == "P" and "transparency" in decoded.info
        assert similar(preprocess(data).image, reference, 0.05)


def test_white_on_black_is_not_inverted(reference: np.ndarray) -> None:
    result = preprocess(gray_image(seven_ink(), dark_on_light=False))
    assert np.abs(result.image - reference).max() < 0.02


def test_dark_ink_on_mid_grey_background_is_inverted(reference: np.ndarray) -> None:
    values = 0.42 - 0.38 * seven_ink()  # a dim photo: paper at 42 %, ink at 4 %
    result = preprocess(np.rint(values * 255).astype(np.uint8))
    assert similar(result.image, reference, 0.03)


def test_dark_on_light_photo_with_uneven_lighting(reference: np.ndarray) -> None:
    photo = paper_photo(seven_ink(), seed=1, gradient=0.5, noise=0.04)
    result = preprocess(encode(Image.fromarray(photo), "JPEG", quality=85))
    assert not result.blank
    assert similar(result.image, reference, 0.06)
    ink = result.stages["ink"]
    assert ink[:30, :].max() == 0 and ink[:, -30:].max() == 0  # the paper grain is not ink


def test_empty_paper_photo_is_blank() -> None:
    photo = paper_photo(np.zeros((300, 400), np.float32), seed=2, gradient=0.5, noise=0.04)
    assert preprocess(encode(Image.fromarray(photo), "JPEG", quality=85)).blank


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (200, 200), 0),
        Image.new("L", (200, 200), 255),
        Image.new("RGB", (120, 80), (30, 140, 90)),
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
        Image.new("I;16", (50, 50), 40000),
        Image.new("F", (50, 50), 0.5),
    ],
    ids=["black", "white", "green", "transparent", "16-bit", "float"],
)
def test_uniform_images_are_blank(image: Image.Image) -> None:
    result = preprocess(image)
    assert_valid(result)
    assert result.blank


def test_uniform_jpeg_with_compression_noise_is_blank() -> None:
    rng = np.random.default_rng(0)
    noisy = np.clip(200 + rng.normal(0, 2, (150, 150)), 0, 255).astype(np.uint8)
    assert preprocess(encode(Image.fromarray(noisy), "JPEG", quality=60)).blank


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP", "GIF"])
def test_every_allowed_format_decodes(fmt: str, reference: np.ndarray) -> None:
    image = gray_image(seven_ink()).convert("RGB")
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    result = preprocess(encode(image, fmt, **options))
    assert similar(result.image, reference, 0.03)


def test_large_photo_is_reduced_and_still_read(reference: np.ndarray) -> None:
    ink = seven_ink(size=(3000, 2000), box=(1000, 400, 1700, 1400), width=90, supersample=1)
    data = encode(gray_image(ink), "PNG")
    assert similar(preprocess(data).image, reference, 0.04)


@pytest.mark.parametrize(
    "make",
    [
        lambda values: Image.fromarray(np.rint(values * 65535).astype(np.uint16)),
        lambda values: Image.fromarray(values.astype(np.float32) * 7.5, "F"),
        lambda values: np.rint(values * 65535).astype(np.uint16),
        lambda values: np.dstack([values] * 3).astype(np.float64),
    ],
    ids=["I;16", "F", "uint16-array", "float-rgb-array"],
)
def test_large_images_of_any_depth_are_reduced(make, reference: np.ndarray) -> None:
    ink = seven_ink(size=(1500, 2100), box=(150, 150, 1350, 1864), width=154, supersample=1)
    result = preprocess(make(1.0 - ink))
    assert max(result.stages["ink"].shape) <= WORK_MAX_SIDE
    assert similar(result.image, reference, 0.05)


def test_many_distinct_uploads_keep_memory_bounded() -> None:
    def one(i: int) -> None:
        ink = stroke_mask((0, 1, 4, 7)[i % 4], box=(60 + i % 50, 40, 200, 240))
        preprocess(canvas_rgba(ink))

    for i in range(10):
        one(i)
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(20):
            one(i)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20, 120):
            one(i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 512 * 1024


# --------------------------------------------------------------------------- properties

_MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "La", "RGBa"]
_ENCODERS = {
    "PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "BMP": {"1", "L", "P", "RGB"},
    "GIF": {"L", "P"},
    "WEBP": {"RGB", "RGBA"},
}


def _content(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Float pixels in [0, 1] of a given kind: noise, constant, blobs or strokes."""
    if kind == "noise":
        return rng.random((height, width)).astype(np.float32)
    if kind == "constant":
        return np.full((height, width), rng.random(), np.float32)
    if kind == "blobs":
        field = np.zeros((height, width), np.float32)
        for _ in range(rng.integers(1, 4)):
            field[rng.integers(0, height), rng.integers(0, width)] = 1.0
        sigma = max(0.5, min(height, width) / 10)
        field = ndimage.gaussian_filter(field, sigma)
        return field / max(float(field.max()), 1e-6)
    digit = int(rng.choice([0, 1, 4, 7]))
    box = (
        rng.uniform(0, width * 0.4),
        rng.uniform(0, height * 0.4),
        rng.uniform(width * 0.6, width),
        rng.uniform(height * 0.6, height),
    )
    width_px = max(1.0, rng.uniform(0.02, 0.15) * min(height, width))
    return stroke_mask(digit, size=(width, height), box=box, width=width_px, supersample=1)


def _image_in_mode(values: np.ndarray, mode: str, rng: np.random.Generator) -> Image.Image:
    gray = Image.fromarray(np.rint(values * 255).astype(np.uint8), "L")
    if mode == "I;16":
        return Image.fromarray(np.rint(values * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(np.rint(values * 1_000_000).astype(np.int32), "I")
    if mode == "F":
        return Image.fromarray(values.astype(np.float32) * float(rng.uniform(0.1, 1000)), "F")
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        alpha = Image.fromarray(np.rint(rng.random() * values * 255).astype(np.uint8), "L")
        if mode == "PA":
            image = gray.convert("P").convert("PA")
            image.putalpha(alpha)
            return image
        base = Image.merge("LA", (gray, alpha))
        if mode in ("LA", "La"):
            return base.convert(mode)
        rgba = base.convert("RGBA")
        return rgba.convert(mode)
    return gray.convert(mode)


@st.composite
def any_image(draw) -> Image.Image | bytes:
    """An image of any mode and size from 1×1 up, sometimes saved as a file of an allowed format."""
    mode = draw(st.sampled_from(_MODES))
    height = draw(st.integers(1, 96) | st.integers(97, 400))
    width = draw(st.integers(1, 96) | st.integers(97, 400))
    kind = draw(st.sampled_from(["noise", "constant", "blobs", "strokes"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = _image_in_mode(_content(kind, height, width, rng), mode, rng)
    formats = [f for f, modes in _ENCODERS.items() if mode in modes]
    if formats and draw(st.booleans()):
        return encode(image, draw(st.sampled_from(formats)))
    return image


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_image())
def test_any_valid_image_gives_a_valid_centred_result(source: Image.Image | bytes) -> None:
    result = preprocess(source)
    assert_valid(result)
    if not result.blank:
        assert centre_of_mass_ok(result.image)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_give_an_invalid_image_error_or_a_valid_result(data: bytes) -> None:
    try:
        result = preprocess(data)
    except InvalidImageError as error:
        assert str(error).endswith(".")
    else:
        assert_valid(result)


_SEEDS = {
    fmt: encode(gray_image(seven_ink(size=(64, 64), box=(16, 8, 48, 56), width=5)), fmt)
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP")
}


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(_SEEDS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.integers(1, 10_000),
)
def test_damaged_files_never_crash(fmt: str, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_SEEDS[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    data = data[: max(1, len(data) - cut % len(data))] if cut % 3 == 0 else data
    try:
        result = preprocess(bytes(data))
    except InvalidImageError:
        return
    assert_valid(result)


@settings(max_examples=60, deadline=None)
@given(st.integers(-60, 60), st.integers(-30, 30), st.sampled_from([0, 1, 4, 7]))
def test_position_on_the_canvas_does_not_matter(dx: int, dy: int, digit: int) -> None:
    box = (80, 50, 190, 220)
    base = preprocess(canvas_rgba(stroke_mask(digit, box=box, width=14)))
    moved_box = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
    moved = preprocess(canvas_rgba(stroke_mask(digit, box=moved_box, width=14)))
    assert np.abs(moved.image - base.image).max() < 1e-5


@settings(max_examples=60, deadline=None)
@given(st.floats(0.3, 0.9), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([0, 1, 4, 7]))
def test_scale_on_the_canvas_does_not_matter(size: float, fx: float, fy: float, digit: int) -> None:
    """The same drawing at 30-90 % of the canvas height, anywhere, gives nearly the same image."""
    reference = preprocess(canvas_rgba(stroke_mask(digit, box=(70, 28, 210, 252), width=20)))
    height = size * 280
    width = height * 140 / 224
    margin = 10 * height / 224 + 3  # the pen's radius and a little: nothing touches the border
    left = margin + fx * (280 - width - 2 * margin)
    top = margin + fy * (280 - height - 2 * margin)
    box = (left, top, left + width, top + height)
    result = preprocess(canvas_rgba(stroke_mask(digit, box=box, width=20 * height / 224)))
    assume(not result.blank)
    assert similar_up_to_one_pixel(result.image, reference.image)


def test_decode_image_refuses_non_bytes() -> None:
    with pytest.raises(TypeError):
        decode_image(Image.new("L", (4, 4)))  # type: ignore[arg-type]


def test_damaged_exif_is_ignored_not_fatal(reference: np.ndarray) -> None:
    image = gray_image(seven_ink()).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    result = preprocess(encode(image, "JPEG", quality=95, exif=exif.tobytes()))
    assert similar(result.image, reference, 0.03)


# --------------------------------------------------------------------------- orientation and tiles


def _asymmetric(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """An image whose every transpose differs (a gradient plus an off-centre block)."""
    x = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 50, height, dtype=np.float32)[:, None]
    values = (x + y).astype(np.uint8)
    values[: height // 3, : width // 4] = 255
    return Image.fromarray(values, "L").convert(mode)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillows_exif_transpose(orientation: int) -> None:
    from PIL import ImageOps

    from core.decode import to_array

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_asymmetric(60, 40), "PNG", exif=exif.tobytes())
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(expected))
    assert np.array_equal(to_array(data), np.asarray(expected))
    # Large images are set upright after reduction; with whole blocks that is the same thing.
    big = encode(_asymmetric(2048, 1536), "PNG", exif=exif.tobytes())
    upright_then_reduced = ImageOps.exif_transpose(Image.open(io.BytesIO(big))).reduce(2)
    assert np.array_equal(to_array(big), np.asarray(upright_then_reduced))


@pytest.mark.parametrize("mode", ["P", "PA", "1", "L", "LA", "RGB", "RGBA", "I;16", "CMYK", "F"])
def test_tiled_reduction_equals_reducing_the_whole_image(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.decode as decode_module

    image = _asymmetric(3001, 1999, "L")
    if mode == "P":
        image = image.convert("P")
        image.info["transparency"] = bytes(range(256))
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    # What converting the whole image and then reducing it gives (the memory-hungry way).
    if mode == "I;16":
        whole = np.asarray(image.convert("I").reduce(3)).astype(np.uint16)
    else:
        whole = np.asarray(decode_module._convert(image.copy()).reduce(3))
    for tile_bytes in (decode_module._TILE_BYTES, 1 << 16):  # a few tiles, then hundreds
        monkeypatch.setattr(decode_module, "_TILE_BYTES", tile_bytes)
        tiled = decode_module.to_array(image)
        assert tiled.shape[:2] == (667, 1001) and tiled.dtype == whole.dtype
        assert np.array_equal(tiled, whole)


def test_exif_orientation_reader_survives_damaged_exif() -> None:
    from core.decode import _exif_orientation

    exif = Image.Exif()
    exif[0x0112] = 8
    raw = exif.tobytes()
    assert _exif_orientation({"exif": raw}) == 8
    assert _exif_orientation({"exif": raw[6:]}) == 8  # without the "Exif\0\0" prefix
    for damaged in (b"", b"Exif\x00\x00", raw[:12], raw[:6] + b"XX" + raw[8:], b"\xff" * 64):
        assert _exif_orientation({"exif": damaged}) == 1
    huge = b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 12 * 65535  # 65,535 entries, no tag
    assert _exif_orientation({"exif": huge}) == 1
