"""Unit tests of the dashboard's pure helpers: figure layout, click mapping, escaping, summaries."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard import charts, images, shell


@pytest.mark.parametrize(("channels", "side", "columns"), [(32, 28, 8), (64, 14, 16), (128, 7, 16)])
def test_feature_map_grid_places_each_channel_where_a_click_finds_it(
    channels: int, side: int, columns: int
) -> None:
    values = np.stack([np.full((side, side), c, np.float32) for c in range(channels)])
    figure, used = images.feature_map_grid(values, columns)
    mosaic = np.asarray(figure.data[0].z)
    targets = figure.data[1]  # one clickable marker per channel, at its tile's centre
    assert used == columns
    assert mosaic.shape == (
        (channels // columns) * (side + 1) - 1,
        columns * (side + 1) - 1,
    )
    for c in (0, 1, columns - 1, columns, channels - 1):
        row, col = divmod(c, columns)
        y, x = row * (side + 1) + side // 2, col * (side + 1) + side // 2
        assert mosaic[y, x] == c
        assert images.channel_at({"x": x, "y": y}, values.shape, used) == c
        assert (targets.x[c], targets.y[c]) == (x, y) and targets.customdata[c][0] == c
    # the one-pixel gaps between tiles belong to no channel
    assert images.channel_at({"x": side, "y": 0}, values.shape, used) is None
    assert np.isnan(mosaic[side, 0])
    assert images.channel_at({"x": "?", "y": 0}, values.shape, used) is None


def test_feature_map_grid_with_fewer_channels_than_columns() -> None:
    figure, used = images.feature_map_grid(np.zeros((3, 5, 5), np.float32), 16)
    assert used == 3
    assert np.asarray(figure.data[0].z).shape == (5, 17)


def test_overlay_pixels_keeps_the_digit_where_there_is_no_attribution() -> None:
    image = np.zeros((28, 28), np.float32)
    image[10:18, 12:16] = 1.0
    plain = images.overlay_pixels(image, np.zeros((28, 28)), size=56)
    assert plain.shape == (56, 56, 3) and plain.dtype == np.uint8
    assert plain[20:36, 24:32].min() == 255 and plain[:10].max() == 0
    heat = np.zeros((28, 28))
    heat[0, 0] = 5.0
    hot = images.overlay_pixels(image, heat, size=28)
    assert tuple(hot[0, 0]) != (0, 0, 0) and tuple(hot[27, 27]) == (0, 0, 0)


def test_confusion_figure_marks_the_chosen_cell_and_every_cell_is_clickable() -> None:
    matrix = np.diag(np.full(10, 100))
    matrix[4, 9] = 7
    figure = charts.confusion_figure(matrix, selected=(4, 9))
    targets = figure.data[1]
    index = list(zip(targets.y, targets.x, strict=True)).index((4, 9))
    assert len(targets.x) == 100 and targets.customdata[index] == 7
    (shape,) = figure.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (8.5, 9.5, 3.5, 4.5)
    assert charts.confusion_figure(matrix).layout.shapes == ()


@pytest.mark.parametrize(
    "name",
    [
        "![x](http://evil.example/a.png)",
        "**bold** _it_ `code`",
        "<script>alert(1)</script>",
        "a\nb",
    ],
)
def test_escape_markdown_leaves_no_active_markdown(name: str) -> None:
    escaped = shell.escape_markdown(name)
    assert "\n" not in escaped
    for index, char in enumerate(escaped):
        if char in "![]()*_`<>":
            assert escaped[index - 1] == "\\", (name, escaped)


def test_downloads_give_the_28x28_input_and_every_prediction() -> None:
    import io
    import json

    from PIL import Image

    from core.predict import make_prediction
    from dashboard import downloads, state

    image = np.zeros((28, 28), np.float32)
    image[5:20, 13:15] = 1.0
    png = Image.open(io.BytesIO(downloads.input_png(image)))
    assert png.size == (28, 28) and png.mode == "L"
    np.testing.assert_array_equal(np.asarray(png), np.round(image * 255).astype(np.uint8))
    current = state.CurrentInput.from_image(image, "sample", "MNIST test image #9", 1, 9)
    probabilities = np.full(10, 0.01)
    probabilities[1] = 0.91
    predictions = {"cnn3": make_prediction("cnn3", probabilities, 0.95)}
    document = json.loads(downloads.predictions_json(current, predictions, 0.975))
    assert document["input"] == {
        "source": "sample",
        "name": "MNIST test image #9",
        "true_label": 1,
        "test_index": 9,
    }
    (row,) = document["predictions"]
    assert row["digit"] == 1 and row["rejected"] and "not a digit" in row["reason"]
    assert len(row["probabilities"]) == 10 and document["operating_point"]["keep"] == 0.975
