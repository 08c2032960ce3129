"""What each unit does: one conv channel's weights, its favourite test digits, the arithmetic of
one activation, what switching channels off does to the prediction, and the layer summary."""

import numpy as np
import pandas as pd
import streamlit as st

from core.data import DataUnavailableError
from core.evaluate import softmax
from core.models import REGISTRY
from core.predict import format_percent
from core.units import UnitsFileError
from dashboard import (
    charts,
    loaders,
    navigation,
    results,
    shell,
    state,
    unit_figures,
    unit_results,
    widgets,
)

shell.page_setup("units")


def no_digit() -> None:
    """What the tabs that need a digit show before one was drawn or chosen."""
    st.info("No digit yet: draw one on the **Draw & predict** page.", icon=":material/draw:")
    navigation.page_link("draw")


def show_weights(variant: str, layer: int, channel: int) -> None:
    """The unit's kernel slices (largest first) and its BatchNorm."""
    weights = unit_results.unit_weights(variant, layer, channel)
    inputs, side = weights.kernel.shape[0], weights.kernel.shape[-1]
    kernel_col, bn_col = st.columns([3, 2])
    with kernel_col:
        st.markdown(f"**Kernel** ({side}×{side} per input channel; red adds, blue subtracts)")
        st.plotly_chart(unit_figures.kernel_figure(weights), key="dl.units.kernel")
        if inputs > 1:
            st.caption(
                f"It sums over {inputs} input channels: the "
                f"{min(inputs, unit_figures.KERNEL_SLICES)} slices with the largest L2 norm, "
                f"largest first (‖w‖ from {weights.norms.max():.3f} down to "
                f"{weights.norms.min():.3f}). Hover for the input channel."
            )
    with bn_col:
        st.markdown("**BatchNorm** (running statistics, eval mode)")
        names = ("γ (weight)", "β (bias)", "running mean", "running var", "ε", "γ / √(var + ε)")
        values = (
            weights.gamma,
            weights.beta,
            weights.mean,
            weights.var,
            weights.eps,
            weights.scale,
        )
        st.dataframe(pd.DataFrame({"": names, "value": values}), hide_index=True)
        st.caption("The conv has no bias (`bias=False`): BatchNorm's β is the unit's only shift.")


def show_statistics(variant: str, layer: int, channel: int) -> None:
    """The 9 test digits that excite the unit most and its mean activation per class."""
    try:
        stats = unit_results.unit_stats(variant)
    except UnitsFileError as error:
        st.info(
            "**The units' test-set statistics are not computed.** Run `python scripts/units.py` "
            f"to compute them.\n\n{shell.escape_markdown(error)}",
            icon=":material/info:",
        )
        return
    if stats.sha256 != loaders.model_and_metadata(variant)[1]["sha256"]:
        st.warning("These statistics are from other weights: run `python scripts/units.py`.")
    layer_stats = stats.layers[layer]
    st.markdown("**The 9 test digits that excite it most** (red: where its peak looks)")
    try:
        row = unit_results.activation_rows(variant)[layer]
        pictures = unit_results.top_digits(layer_stats, row, channel)
    except DataUnavailableError:
        indices = ", ".join(map(str, layer_stats.top_index[channel]))
        st.info(
            f"The MNIST test images are not available here, so they cannot be shown (test "
            f"indices {indices}).",
            icon=":material/cloud_off:",
        )
    else:
        for column, (picture, caption) in zip(st.columns(len(pictures)), pictures, strict=True):
            column.image(picture, caption=caption, width="stretch")
    means = layer_stats.class_mean[channel]
    st.markdown("**Mean activation per digit class**: what it is selective for")
    st.plotly_chart(unit_figures.class_mean_figure(means), key="dl.units.means")
    st.caption(
        f"Highest for **{int(np.nanargmax(means))}**: the mean over each map and the test digits "
        f"of each class ({stats.images:,} digits)."
    )


def chosen_cell(values: np.ndarray, keys: tuple[str, str, str]) -> None:
    """Start at the map's peak; a click on the map (last run's selection) picks its cell."""
    row_key, col_key, map_key = keys
    peak = np.unravel_index(values.argmax(), values.shape)
    st.session_state.setdefault(row_key, int(peak[0]))
    st.session_state.setdefault(col_key, int(peak[1]))
    point = widgets.selected_point(st.session_state.get(map_key))
    clicked = (int(point["y"]), int(point["x"])) if point and "x" in point else None
    if clicked is not None and st.session_state.get(f"{map_key}.clicked") != clicked:
        st.session_state[row_key], st.session_state[col_key] = clicked
    st.session_state[f"{map_key}.clicked"] = clicked


def show_arithmetic(variant: str, layer: int, channel: int, current: state.CurrentInput) -> None:
    """Pick a cell of the unit's map; show how its value came about, then the dense head."""
    values = results.layer_activations(current.image, variant)[layer].values[channel]
    keys = tuple(f"dl.units.{name}.{variant}.{layer}" for name in ("row", "col", "cellmap"))
    chosen_cell(values, keys)
    map_col, patch_col = st.columns([2, 3])
    row = int(map_col.number_input("Row", 0, values.shape[0] - 1, key=keys[0]))
    col = int(map_col.number_input("Column", 0, values.shape[1] - 1, key=keys[1]))
    figure = unit_figures.cell_map_figure(values, (row, col), f"channel {channel}: click a cell")
    with map_col:
        st.plotly_chart(figure, key=keys[2], on_select="rerun", selection_mode="points")
    result = unit_results.arithmetic(current.image, variant, layer, channel, (row, col))
    cell = result.cell
    shown = 0
    with patch_col:
        st.markdown(
            f"**The input patch** (receptive field at the layer's input): rows "
            f"{cell.rows.min()}–{cell.rows.max()}, cols {cell.cols.min()}–{cell.cols.max()}; "
            "outside the map the edge repeats (replicate padding)."
        )
        if len(result.contributions) > 1:
            table, top = unit_figures.contribution_table(result)
            st.dataframe(table, hide_index=True)
            key = f"dl.units.in.{variant}.{layer}.{channel}.{row}.{col}"
            shown = int(st.selectbox("Patch and kernel of input channel", top, key=key))
    for column, (title, grid) in zip(
        st.columns(3), unit_figures.cell_grids(result, shown), strict=True
    ):
        column.markdown(f"**{title}** (input channel {shown})")
        column.dataframe(grid, hide_index=True)
    st.code(unit_figures.arithmetic_lines(result, float(values[row, col])), language=None)
    head = unit_results.head(current.image, variant)
    terms, probabilities = unit_figures.head_tables(head)
    predicted = int(np.argmax(head.logits))
    st.markdown(
        f"**The dense head**: {len(head.features):,} features (the last pooled maps, flattened) "
        f"→ fc1 → LeakyReLU ({int((head.hidden > 0).sum())} of {len(head.hidden)} hidden units "
        f"positive) → fc2. Logit {predicted} = Σⱼ W2[{predicted}, j] · hidden[j] + bias:"
    )
    terms_col, probs_col = st.columns(2)
    terms_col.dataframe(terms, hide_index=True, height=35 * (len(terms) + 1) + 3)
    probs_col.dataframe(probabilities, hide_index=True)
    st.caption(
        f"Every other page shows softmax(logits / T), T = {head.temperature:.3f}, fitted on the "
        "validation split: label smoothing leaves the raw softmax under-confident."
    )


def switch_off(key: str, channels: list[int]) -> None:
    """Button callback: put ``channels`` into the multiselect (runs before the rerun)."""
    st.session_state[key] = channels


def show_ablation(variant: str, layer: int, channels: int, current: state.CurrentInput) -> None:
    """Switch any channels of the layer off and see the calibrated probabilities change."""
    key = f"dl.units.off.{variant}.{layer}"
    ranking = unit_results.ranking(current.image, variant, layer)
    digit, most = ranking.target, [int(c) for c in ranking.channels[:8]]
    pick, buttons = st.columns([4, 1])
    buttons.button("Switch on all", on_click=switch_off, args=(key, []))
    buttons.button("Off: the 8 that matter most", on_click=switch_off, args=(key, most))
    off = pick.multiselect("Channels to switch off", list(range(channels)), key=key)
    temperature = unit_results.temperature(variant)
    logits = unit_results.ablated_logits(current.image, variant, layer, off)
    before, after = softmax(ranking.logits, temperature), softmax(logits, temperature)
    now = int(np.argmax(after))
    changed = bool(off)
    left, middle, right = st.columns(3)
    # as many decimals as a saturated probability needs (99.994%, not 100.00%), like every page
    left.metric(f"P({digit}), all channels on", format_percent(before[digit]))
    points = 100 * (after[digit] - before[digit])  # a tiny change shows: -0.0036 pp, not -0.00
    delta = f"{points:+.2f} pp" if abs(points) >= 0.01 else f"{points:+.2g} pp"
    middle.metric(
        f"P({digit}), {len(off)} channel(s) off",
        format_percent(after[digit]),
        delta if changed else None,
    )
    drop = f"{logits[digit] - ranking.logits[digit]:+.3f}" if changed else None
    right.metric(f"logit {digit}, {len(off)} channel(s) off", f"{logits[digit]:.3f}", drop)
    st.caption(
        f"A channel switched off is zeroed after its block's LeakyReLU. The model now predicts "
        f"**{now}** ({format_percent(after[now])}); calibrated probabilities "
        f"(T = {temperature:.3f}), which saturate: the logit shows changes they hide."
    )
    figure = charts.probability_figure({"all on": before, "switched off": after}, height=260)
    st.plotly_chart(figure, key="dl.units.probs")
    st.markdown(f"**Channels by how much switching each off alone lowers logit {digit}**")
    ranked = {"channel": ranking.channels, f"logit {digit} drop": ranking.drops}
    ranked["then predicts"] = ranking.predicted
    st.dataframe(pd.DataFrame(ranked), hide_index=True, height=260)


with shell.guard():
    variant = widgets.model_picker(conv_only=True)
    maps = [row.output_shape for row in unit_results.activation_rows(variant)]
    pick_layer, pick_channel = st.columns(2)
    layer = int(
        pick_layer.selectbox(
            "Layer",
            range(len(maps)),
            key=f"dl.units.layer.{variant}",
            format_func=lambda i: (
                f"Layer {i + 1}: {maps[i][0]} channels of {maps[i][1]}×{maps[i][2]}"
            ),
        )
    )
    channels = maps[layer][0]
    key = f"dl.units.channel.{variant}.{layer}"
    channel = int(pick_channel.number_input("Channel", 0, channels - 1, key=key))
    current = state.current_input()
    tabs = st.tabs(["The unit", "The arithmetic", "Switch channels off", "Layer summary"])
    with tabs[0]:
        show_weights(variant, layer, channel)
        show_statistics(variant, layer, channel)
        if current is not None:
            values = results.layer_activations(current.image, variant)[layer].values[channel]
            st.markdown(f"**Its map for {current.describe()}** (max {values.max():.3f})")
            peak = np.unravel_index(values.argmax(), values.shape)
            figure = unit_figures.cell_map_figure(values, peak, clickable=False)
            st.plotly_chart(figure, key="dl.units.map")
    with tabs[1]:
        if current is None:
            no_digit()
        else:
            show_arithmetic(variant, layer, channel, current)
    with tabs[2]:
        if current is None:
            no_digit()
        else:
            show_ablation(variant, layer, channels, current)
    with tabs[3]:
        st.caption(
            "Receptive field: the input square one cell depends on. A k×k conv adds (k − 1) × "
            "the cell spacing; a 2×2 max-pool adds one spacing and doubles it. From the flatten "
            "on, every output sees the whole image."
        )
        cnns = [v for v in loaders.loaded_variants() if REGISTRY[v].conv_blocks]
        for name in sorted(cnns, key=lambda v: v != variant):
            rows = unit_results.layer_rows(name)
            label = f"{widgets.model_label(name)}: {sum(r.params for r in rows):,} parameters"
            with st.expander(label, expanded=name == variant):
                st.dataframe(unit_figures.layer_table(rows), hide_index=True)
