"""What each unit does: ``core.units`` against the model's own forward pass, and the page.

The arithmetic must reproduce the activations forward hooks record (to 1e-5), including border
cells (replicate padding) and cells an odd map's max-pool drops; an ablation must zero exactly
the chosen channels after the activation and nothing else; the precompute must be deterministic.
The page tests run AppTest on the shipped models with unit statistics of a small subset.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from core.checkpoints import DEFAULT_DIRECTORY, load_model
from core.data import DataUnavailableError
from core.evaluate import softmax
from core.inputs import image_to_input, to_input
from core.models import REGISTRY, count_parameters
from core.predict import format_percent
from core.unit_stats import precompute, read_unit_stats, units_path, write_unit_stats
from core.units import (
    UnitsFileError,
    ablate,
    ablation_logits,
    activation_rows,
    cell_arithmetic,
    channel_ranking,
    head_arithmetic,
    layer_rows,
    receptive_box,
    unit_weights,
)
from dashboard import loaders, state, unit_figures, widgets
from tests.explain_helpers import drawn_digit, hook_count, seeded_model

CNNS = [name for name, spec in REGISTRY.items() if spec.conv_blocks]
APP_SCRIPT = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PAGE = "views/units.py"
ATOL = 1e-5


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[torch.nn.Module, dict]]:
    """The shipped CNNs with their metadata."""
    return {variant: load_model(variant, DEFAULT_DIRECTORY) for variant in CNNS}


def model_input(metadata: dict, kind: str = "seven") -> torch.Tensor:
    return to_input(torch.from_numpy(drawn_digit(kind))[None], metadata["normalization"])


def recorded(model: torch.nn.Module, x: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """The block's conv, bn, act and pool outputs, as forward hooks see them."""
    block = model.features[layer]
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(block, name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach())
        )
        for name in ("conv", "bn", "act", "pool")
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize("variant", CNNS)
def test_cell_arithmetic_reproduces_the_forward_pass(variant: str, models) -> None:
    model, metadata = models[variant]
    x = model_input(metadata)
    for layer in range(REGISTRY[variant].conv_blocks):
        seen = recorded(model, x, layer)
        _, channels, height, width = seen["act"].shape
        peak = np.unravel_index(int(seen["act"][0, 5].argmax()), (height, width))
        cells = [(0, 0), (height - 1, width - 1), (0, width // 2), (height // 2, 1), peak]
        for channel in (0, 5, channels - 1):
            for row, col in cells:
                result = cell_arithmetic(model, x, layer, channel, (int(row), int(col)))
                cell = result.cell
                assert cell.conv == pytest.approx(
                    float(seen["conv"][0, channel, row, col]), abs=ATOL
                )
                assert cell.normalised == pytest.approx(
                    float(seen["bn"][0, channel, row, col]), abs=ATOL
                )
                assert cell.activation == pytest.approx(
                    float(seen["act"][0, channel, row, col]), abs=ATOL
                )
                assert result.contributions.sum() == pytest.approx(cell.conv, abs=1e-9)
                if row // 2 < seen["pool"].shape[2] and col // 2 < seen["pool"].shape[3]:
                    expected = float(seen["pool"][0, channel, row // 2, col // 2])
                    assert result.pooled == pytest.approx(expected, abs=ATOL)
                else:
                    assert result.pool is None and result.pooled is None


def test_border_patches_use_replicate_padding(models) -> None:
    model, metadata = models["cnn1"]  # 5×5 kernels: two rows of padding
    x = model_input(metadata)
    result = cell_arithmetic(model, x, 0, 3, (0, 27))
    assert result.cell.rows.tolist() == [0, 0, 0, 1, 2]
    assert result.cell.cols.tolist() == [25, 26, 27, 27, 27]
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")[0].double().numpy()
    np.testing.assert_array_equal(result.cell.patch, padded[:, 0:5, 27:32])
    zero_padded = F.pad(x, (2, 2, 2, 2))[0].double().numpy()[:, 0:5, 27:32]
    assert not np.array_equal(result.cell.patch, zero_padded)


def test_odd_maps_drop_their_last_row_from_the_pool(models) -> None:
    model, metadata = models["cnn3"]  # layer 3: 7×7 map pooled to 3×3
    result = cell_arithmetic(model, model_input(metadata), 2, 0, (6, 2))
    assert result.pool is None
    inside = cell_arithmetic(model, model_input(metadata), 2, 0, (5, 3))
    assert [(c.row, c.col) for c in inside.pool] == [(4, 2), (4, 3), (5, 2), (5, 3)]


def test_unit_weights_are_the_layer_parameters_largest_slice_first(models) -> None:
    model, _ = models["cnn2"]
    weights = unit_weights(model, 1, 7)
    block = model.features[1]
    np.testing.assert_array_equal(weights.kernel, block.conv.weight[7].detach().double().numpy())
    assert weights.kernel.shape == (32, 3, 3)
    assert list(weights.norms[weights.order]) == sorted(weights.norms, reverse=True)
    assert weights.norms[3] == pytest.approx(np.linalg.norm(weights.kernel[3]))
    bn = block.bn
    expected = float(bn.weight.detach()[7] / torch.sqrt(bn.running_var[7] + bn.eps))
    assert weights.scale == pytest.approx(expected, rel=1e-6)
    assert block.conv.bias is None
    with pytest.raises(ValueError, match="Channel 64"):
        unit_weights(model, 1, 64)


@pytest.mark.parametrize("variant", CNNS)
def test_head_arithmetic_reproduces_the_logits(variant: str, models) -> None:
    model, metadata = models[variant]
    x = model_input(metadata, "zero")
    head = head_arithmetic(model, x, metadata["temperature"])
    with torch.no_grad():
        logits = model(x)[0].double().numpy()
    np.testing.assert_allclose(head.logits, logits, atol=ATOL)
    np.testing.assert_allclose(head.raw, softmax(logits), atol=1e-6)
    np.testing.assert_allclose(
        head.calibrated, softmax(logits / metadata["temperature"]), atol=1e-6
    )
    assert metadata["temperature"] < 1 and head.calibrated.max() > head.raw.max()


# --------------------------------------------------------------------------- ablation


@pytest.mark.parametrize("variant", ["cnn1", "cnn3"])
def test_ablation_zeroes_exactly_the_chosen_channels(variant: str, models) -> None:
    model, metadata = models[variant]
    x = model_input(metadata)
    layer, off = 0, [1, 4, 9]
    intact = recorded(model, x, layer)["act"]
    block = model.features[layer]
    seen: list[torch.Tensor] = []
    handle = block.pool.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    try:
        logits = ablate(model, x, layer, off)
    finally:
        handle.remove()
    kept = [c for c in range(intact.shape[1]) if c not in off]
    assert torch.all(seen[0][:, off] == 0)
    assert torch.equal(seen[0][:, kept], intact[:, kept])
    zeroed = intact.clone()
    zeroed[:, off] = 0
    with torch.no_grad():
        rest = model.features[layer + 1 :](block.drop(block.pool(zeroed)))
        expected = model.head(rest)[0].double().numpy()
    np.testing.assert_allclose(logits, expected, atol=ATOL)
    with torch.no_grad():
        np.testing.assert_allclose(ablate(model, x, layer, []), model(x)[0].numpy(), atol=ATOL)
    assert hook_count(model) == 0


def test_one_batched_pass_matches_single_ablations_and_ranks_by_drop(models) -> None:
    model, metadata = models["cnn2"]
    x = model_input(metadata, "zero")
    ranking = channel_ranking(model, x, 1)
    with torch.no_grad():
        assert ranking.target == int(model(x).argmax())
    assert list(ranking.drops) == sorted(ranking.drops, reverse=True)
    assert sorted(ranking.channels.tolist()) == list(range(64))
    for channel, drop in zip(ranking.channels[:3], ranking.drops[:3], strict=True):
        alone = ablate(model, x, 1, [int(channel)])
        assert ranking.logits[ranking.target] - alone[ranking.target] == pytest.approx(
            drop, abs=ATOL
        )
    masks = np.zeros((2, 64), bool)
    masks[1, :32] = True
    both = ablation_logits(model, x, 1, masks)
    np.testing.assert_allclose(both[1], ablate(model, x, 1, list(range(32))), atol=ATOL)


def test_ablation_hooks_are_removed_when_the_forward_pass_fails() -> None:
    model = seeded_model("cnn2")
    with pytest.raises(RuntimeError):
        ablate(model, torch.zeros(1, 1, 5, 5), 0, [0])
    assert hook_count(model) == 0
    with pytest.raises(ValueError, match="mask"):
        ablation_logits(model, torch.zeros(1, 1, 28, 28), 0, np.zeros((1, 3), bool))


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("variant", "fields"),
    [("cnn1", [5, 6]), ("cnn2", [3, 4, 8, 10]), ("cnn3", [3, 4, 8, 10, 18, 22])],
)
def test_receptive_fields_follow_kernels_and_pooling(variant: str, fields: list[int]) -> None:
    model = seeded_model(variant)
    rows = layer_rows(model)
    convs_and_pools = [r.receptive_field for r in rows if r.kind in {"Conv2d", "MaxPool2d"}]
    assert convs_and_pools == fields
    assert sum(r.params for r in rows) == count_parameters(model)
    assert rows[-1].output_shape == (10,) and rows[-1].receptive_field is None
    assert [r.output_shape[1:] for r in activation_rows(model)] == [
        (28 // 2**i, 28 // 2**i) for i in range(REGISTRY[variant].conv_blocks)
    ]


@pytest.mark.parametrize("variant", ["cnn1", "cnn3"])
def test_receptive_box_holds_every_pixel_a_cell_depends_on(variant: str) -> None:
    model = seeded_model(variant)
    for layer, geometry in enumerate(activation_rows(model)):
        side = geometry.output_shape[1]
        for cell in [(0, 0), (side // 2, side // 3), (side - 1, side - 1)]:
            x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(layer))
            x.requires_grad_(True)
            block = model.features[layer]
            out = block.act(block.bn(block.conv(model.features[:layer](x))))
            out[0, 0, cell[0], cell[1]].backward()
            rows, cols = np.nonzero(x.grad[0, 0].numpy())
            top, left, bottom, right = receptive_box(geometry, cell)
            assert rows.size
            assert top <= rows.min() and rows.max() <= bottom
            assert left <= cols.min() and cols.max() <= right
            if layer == 0:
                assert (rows.min(), cols.min(), rows.max(), cols.max()) == (
                    top,
                    left,
                    bottom,
                    right,
                )


# --------------------------------------------------------------------------- precompute and file


def subset(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """``n`` drawn digits (uint8) with labels: three kinds at several shifts, plus noise."""
    rng = np.random.default_rng(0)
    kinds = {"seven": 7, "zero": 0, "one": 1}
    images, labels = [], []
    for i in range(n):
        kind = list(kinds)[i % 3]
        noise = rng.integers(0, 40, (28, 28))
        images.append(np.clip(drawn_digit(kind, i % 7 - 3).astype(int) + noise, 0, 255))
        labels.append(kinds[kind])
    return np.array(images, np.uint8), np.array(labels)


def test_precompute_is_deterministic_and_finds_each_units_strongest_digits(tmp_path: Path) -> None:
    model = seeded_model("cnn2")
    images, labels = subset()
    norm = {"mean": 0.13, "std": 0.31}
    stats = precompute(model, images, labels, norm, "ab" * 32, batch_size=len(images))
    again = precompute(model, images, labels, norm, "ab" * 32, batch_size=7)
    for first, second in zip(stats.layers, again.layers, strict=True):
        np.testing.assert_array_equal(first.top_index, second.top_index)
        np.testing.assert_array_equal(first.top_cell, second.top_cell)
        np.testing.assert_allclose(first.top_value, second.top_value, atol=1e-6)
    with torch.no_grad():
        acts = [recorded(model, to_input(torch.from_numpy(images), norm), i)["act"] for i in (0, 1)]
    for layer, act in enumerate(acts):
        peaks = act.flatten(2).max(2).values.numpy()  # [N, C]
        got = stats.layers[layer]
        for channel in (0, 3, act.shape[1] - 1):
            order = np.argsort(-peaks[:, channel], kind="stable")[:9]
            np.testing.assert_array_equal(got.top_index[channel], order)
            np.testing.assert_allclose(got.top_value[channel], peaks[order, channel], atol=1e-6)
            row, col = got.top_cell[channel, 0]
            assert act[order[0], channel, row, col] == peaks[order[0], channel]
            means = act[:, channel].mean(dim=(1, 2)).double().numpy()
            expected = [
                means[labels == d].mean() if (labels == d).any() else np.nan for d in range(10)
            ]
            np.testing.assert_allclose(got.class_mean[channel], expected, atol=1e-6)
    path = tmp_path / "units_cnn2.npz"
    write_unit_stats(path, stats)
    first = path.read_bytes()
    write_unit_stats(path, again)
    assert path.read_bytes() == first  # byte for byte: fixed zip timestamps
    assert len(first) < 20_000
    shapes = [r.output_shape for r in activation_rows(model)]
    loaded = read_unit_stats("cnn2", tmp_path, shapes)
    assert loaded.images == len(images) and loaded.sha256 == "ab" * 32
    np.testing.assert_array_equal(loaded.layers[1].top_index, stats.layers[1].top_index)
    np.testing.assert_allclose(
        loaded.layers[1].top_value, stats.layers[1].top_value, rtol=1e-3, atol=1e-4
    )


def test_a_missing_or_wrong_units_file_is_a_clear_error(tmp_path: Path) -> None:
    model = seeded_model("cnn2")
    shapes = [r.output_shape for r in activation_rows(model)]
    with pytest.raises(UnitsFileError, match=r"missing\. Run `python scripts/units\.py`"):
        read_unit_stats("cnn2", tmp_path, shapes)
    images, labels = subset(12)
    write_unit_stats(
        units_path("cnn2", tmp_path), precompute(model, images, labels, {"mean": 0.1, "std": 0.3})
    )
    with pytest.raises(UnitsFileError, match="does not fit the model"):
        read_unit_stats("cnn2", tmp_path, [(32, 28, 28), (128, 14, 14)])
    with pytest.raises(UnitsFileError, match="does not fit the model"):
        read_unit_stats("cnn2", tmp_path, shapes[:1])
    buffer = io.BytesIO()
    np.savez(buffer, images=np.array([{"a": 1}], dtype=object))
    units_path("cnn2", tmp_path).write_bytes(buffer.getvalue())
    with pytest.raises(UnitsFileError, match="unreadable"):
        read_unit_stats("cnn2", tmp_path, shapes)
    units_path("cnn2", tmp_path).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(UnitsFileError, match="unreadable"):
        read_unit_stats("cnn2", tmp_path, shapes)
    units_path("cnn2", tmp_path).unlink()
    units_path("cnn2", tmp_path).mkdir()
    with pytest.raises(UnitsFileError, match="not a regular file"):
        read_unit_stats("cnn2", tmp_path, shapes)


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def unit_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped checkpoints (linked) with unit statistics of a small drawn subset."""
    directory = tmp_path_factory.mktemp("checkpoints")
    for source in DEFAULT_DIRECTORY.iterdir():
        if not source.name.startswith("units_"):
            (directory / source.name).symlink_to(source)
    images, labels = subset()
    for variant in CNNS:
        model, metadata = load_model(variant, DEFAULT_DIRECTORY)
        stats = precompute(model, images, labels, metadata["normalization"], metadata["sha256"])
        write_unit_stats(units_path(variant, directory), stats)
    return directory


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch, unit_checkpoints: Path) -> Path:
    monkeypatch.setenv(loaders.CHECKPOINTS_ENV_VAR, str(unit_checkpoints))
    return unit_checkpoints


def page_input(metadata: dict) -> torch.Tensor:
    """The tensor the page feeds the model for the injected digit."""
    current = state.CurrentInput.from_image(drawn_digit("seven"), "sample", "x")
    return image_to_input(current.image, metadata["normalization"])


def page(variant: str, with_input: bool = True, session: dict | None = None) -> AppTest:
    """The units page on ``variant`` (the drawn seven as input), ``session`` put into the
    session state before the first run."""
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=90)
    if with_input:
        image = drawn_digit("seven")
        at.session_state[state.INPUT_KEY] = state.CurrentInput.from_image(image, "sample", "x")
    at.session_state[widgets.MODEL_KEY] = variant
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.switch_page(PAGE)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("variant", ["cnn1", "cnn3"])
def test_page_renders_a_unit_its_arithmetic_and_the_layer_summary(
    variant: str, checkpoints, models
) -> None:
    at = page(variant)
    assert_clean(at)
    assert at.title[0].value == "What each unit does"
    assert (
        len(at.selectbox(key=f"dl.units.layer.{variant}").options) == REGISTRY[variant].conv_blocks
    )
    assert any("no bias" in c.value for c in at.caption)
    assert any("LeakyReLU" in c.value for c in at.code)
    assert not any("not computed" in i.value for i in at.info)
    summary = next(d.value for d in at.dataframe if "receptive field" in d.value.columns)
    assert summary["parameters"].sum() == models[variant][1]["params"]
    assert summary["receptive field"].iloc[0] == ("5×5 px" if variant == "cnn1" else "3×3 px")


def test_entering_a_cell_shows_its_arithmetic(checkpoints, models) -> None:
    at = page("cnn3")
    at.selectbox(key="dl.units.layer.cnn3").set_value(2).run()
    at.number_input(key="dl.units.channel.cnn3.2").set_value(11).run()
    at.number_input(key="dl.units.row.cnn3.2").set_value(0)
    at.number_input(key="dl.units.col.cnn3.2").set_value(5).run()
    assert_clean(at)
    model, metadata = models["cnn3"]
    x = page_input(metadata)
    expected = cell_arithmetic(model, x, 2, 11, (0, 5))
    forward = float(recorded(model, x, 2)["act"][0, 11, 0, 5])
    (code,) = [c.value for c in at.code]
    assert f"= {expected.cell.activation:.6f}" in code and f"gives {forward:.6f}" in code
    assert f"→ max {expected.pooled:.6f}" in code
    at.number_input(key="dl.units.row.cnn3.2").set_value(6).run()
    assert "no 2×2 window" in at.code[0].value


def test_the_clickable_map_spans_exactly_its_cells() -> None:
    """Axes pinned to the map (the click targets' markers would pad the autorange): cell (r, c)
    sits at x = c, y = r on a grid the browser test clicks, the chosen one outlined."""
    figure = unit_figures.cell_map_figure(np.arange(35.0).reshape(5, 7), (1, 3))
    assert tuple(figure.layout.xaxis.range) == (-0.5, 6.5)
    assert tuple(figure.layout.yaxis.range) == (4.5, -0.5)
    assert figure.layout.yaxis.autorange is False
    _, targets = figure.data
    assert (targets.x[10], targets.y[10], tuple(targets.customdata[10])) == (3, 1, (1, 3, 10))
    outline = figure.layout.shapes[0]
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (2.5, 3.5, 0.5, 1.5)


def test_clicking_a_cell_of_the_map_shows_its_arithmetic(checkpoints, models) -> None:
    """A click on the map (the selection event Plotly sends: AppTest cannot click) picks its cell
    for the arithmetic; a row typed afterwards is not overridden by that old click."""
    model, metadata = models["cnn3"]
    x = page_input(metadata)
    values = recorded(model, x, 0)["act"][0, 4].numpy()
    peak = np.unravel_index(values.argmax(), values.shape)
    masked = values.copy()
    masked[peak] = -np.inf
    row, col = (int(i) for i in np.unravel_index(masked.argmax(), values.shape))
    click = {"selection": {"points": [{"curve_number": 1, "x": col, "y": row}]}}
    at = page("cnn3", session={"dl.units.channel.cnn3.0": 4, "dl.units.cellmap.cnn3.0": click})
    assert_clean(at)
    assert at.number_input(key="dl.units.row.cnn3.0").value == row
    assert at.number_input(key="dl.units.col.cnn3.0").value == col
    expected = cell_arithmetic(model, x, 0, 4, (row, col))
    (code,) = [c.value for c in at.code]
    assert f"gives {float(values[row, col]):.6f} at ({row}, {col})" in code
    assert f"= {expected.cell.activation:.6f}" in code
    typed = (row + 3) % values.shape[0]
    at.number_input(key="dl.units.row.cnn3.0").set_value(typed).run()
    assert at.number_input(key="dl.units.row.cnn3.0").value == typed
    assert at.number_input(key="dl.units.col.cnn3.0").value == col
    assert f"at ({typed}, {col})" in at.code[0].value


def test_switching_channels_off_changes_the_shown_probabilities(checkpoints, models) -> None:
    at = page("cnn1")
    model, metadata = models["cnn1"]
    x = page_input(metadata)
    ranking = channel_ranking(model, x, 0)
    digit, temperature = ranking.target, metadata["temperature"]
    before = {m.label: m.value for m in at.metric}
    off = [int(c) for c in ranking.channels[:4]]
    at.multiselect(key="dl.units.off.cnn1.0").set_value(off).run()
    assert_clean(at)
    after = {m.label: m.value for m in at.metric}
    expected = softmax(ablate(model, x, 0, off), temperature)[digit]
    assert after[f"P({digit}), 4 channel(s) off"] == format_percent(expected)
    assert before[f"P({digit}), all channels on"] == format_percent(
        softmax(ranking.logits, temperature)[digit]
    )
    logit = ablate(model, x, 0, off)[digit]
    assert after[f"logit {digit}, 4 channel(s) off"] == f"{logit:.3f}"
    assert logit < ranking.logits[digit]
    assert before[f"logit {digit}, 0 channel(s) off"] == f"{ranking.logits[digit]:.3f}"
    (most,) = [b for b in at.button if "matter most" in b.label]
    most.click().run()
    assert at.multiselect(key="dl.units.off.cnn1.0").value == [int(c) for c in ranking.channels[:8]]
    assert any("8 channel(s) off" in m.label for m in at.metric)


def test_without_statistics_or_mnist_the_page_says_so(
    monkeypatch, tmp_path: Path, checkpoints
) -> None:
    def absent() -> None:
        raise DataUnavailableError("no MNIST here")

    monkeypatch.setattr(loaders, "mnist_test", absent)
    at = page("cnn2")
    assert_clean(at)
    assert any("not available here" in i.value and "test indices" in i.value for i in at.info)
    for source in checkpoints.iterdir():
        if not source.name.startswith("units_"):
            (tmp_path / source.name).symlink_to(source.resolve())
    monkeypatch.setenv(loaders.CHECKPOINTS_ENV_VAR, str(tmp_path))
    at = page("cnn2")
    assert_clean(at)
    assert any("python scripts/units.py" in i.value for i in at.info)


def test_baselines_are_not_offered_and_no_digit_is_explained(checkpoints) -> None:
    at = page("logreg", with_input=False)
    assert_clean(at)
    assert any("no conv layers" in i.value for i in at.info)
    assert at.session_state[widgets.MODEL_KEY] == "cnn3"
    assert any("No digit yet" in i.value for i in at.info)
    assert not at.code and not at.metric
