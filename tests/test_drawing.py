"""The drawing pad's strokes: what the browser may send, and the image drawn from them."""

from __future__ import annotations

import numpy as np
import pytest

from core.drawing import MAX_POINTS, MAX_STROKES, PAD_SIZE, Stroke, parse_strokes, render_strokes
from core.preprocess import preprocess


def test_strokes_are_parsed_and_clamped_to_the_pad() -> None:
    strokes = parse_strokes(
        [{"w": 18, "p": [[10, 20], [30.5, 40]]}, {"w": 6.5, "p": [[-500, 900]]}]
    )
    assert strokes == [
        Stroke(18.0, ((10.0, 20.0), (30.5, 40.0))),
        Stroke(6.5, ((-100.0, PAD_SIZE + 100.0),)),
    ]
    assert parse_strokes([]) == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"w": 18}, "not a list"),
        ([{"w": 18, "p": []}], "no points"),
        ([{"w": 18}], "no points"),
        (["stroke"], "no points"),
        ([{"w": "18", "p": [[1, 2]]}], "width is not a number"),
        ([{"w": True, "p": [[1, 2]]}], "width is not a number"),
        ([{"w": 0.5, "p": [[1, 2]]}], "width of 0.5 px"),
        ([{"w": float("inf"), "p": [[1, 2]]}], "not finite"),
        ([{"w": 18, "p": [[1, float("nan")]]}], "coordinate is not finite"),
        ([{"w": 18, "p": [[1, 2, 3]]}], "not (x, y)"),
        ([{"w": 18, "p": [[1, None]]}], "coordinate is not a number"),
        ([{"w": 18, "p": [[1, 2]]}] * (MAX_STROKES + 1), f"more than {MAX_STROKES} strokes"),
        ([{"w": 18, "p": [[1, 2]] * (MAX_POINTS + 1)}], "points"),
    ],
)
def test_anything_but_strokes_is_refused_with_a_reason(raw: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_strokes(raw)


def test_strokes_are_drawn_black_on_white_with_a_round_brush() -> None:
    image = np.asarray(render_strokes([Stroke(20.0, ((100.0, 140.0), (180.0, 140.0)))]))
    assert image.shape == (PAD_SIZE, PAD_SIZE) and image.dtype == np.uint8
    assert image[140, 140] == 0 and image[0, 0] == 255  # ink on the line, white elsewhere
    assert image[140, 92] == 0 and image[140, 188] == 0  # round caps reach half a brush beyond
    assert image[140, 75] == 255 and image[115, 140] == 255
    ink = image < 128
    assert abs(int(ink[:, 140].sum()) - 20) <= 1  # the brush is 20 px wide
    dot = np.asarray(render_strokes([Stroke(10.0, ((50.0, 50.0),))]))
    assert dot[50, 50] == 0 and abs(int((dot < 128).sum()) - round(np.pi * 25)) <= 8


def test_a_drawn_seven_is_preprocessed_like_any_canvas() -> None:
    seven = Stroke(18.0, ((70.0, 55.0), (200.0, 50.0), (160.0, 140.0), (125.0, 245.0)))
    result = preprocess(render_strokes([seven]))
    assert not result.blank and result.image.shape == (28, 28)
    assert result.image.max() == pytest.approx(1.0, abs=0.05) and result.image[0, 0] == 0.0
    assert render_strokes([]).getextrema() == (255, 255)
