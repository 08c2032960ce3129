"""Every conv layer's feature maps for the current digit; click a map (or pick it) to enlarge it."""

import streamlit as st

from dashboard import images, results, shell, state, widgets

shell.page_setup("activations")

with shell.guard():
    variant = widgets.model_picker(conv_only=True)
    current = state.require_input()
    layers = results.layer_activations(current.image, variant)
    prediction = results.predictions(current.image, widgets.keep())[variant]
    st.caption(
        f"{widgets.model_label(variant)} on {current.describe()}: predicts "
        f"**{prediction.digit}** ({prediction.confidence:.1%}). Each tile is one channel's "
        "LeakyReLU output after its conv block (before pooling); all tiles of a layer share one "
        "colour scale. Click a tile to enlarge it."
    )
    for index, layer in enumerate(layers):
        channels, height, width = layer.shape
        st.subheader(f"Layer {index + 1}: `{layer.name}`")
        st.markdown(
            f"**{channels} feature maps** of {height}×{width} (shape {channels}×{height}×{width})"
        )
        grid_col, zoom_col = st.columns([3, 1])
        with grid_col:
            figure, used_columns = images.feature_map_grid(layer.values)
            event = st.plotly_chart(
                figure,
                key=f"dl.act.grid.{variant}.{index}",
                on_select="rerun",
                selection_mode="points",
            )
        channel_key = f"dl.act.channel.{variant}.{index}"
        clicked_key = f"{channel_key}.clicked"
        point = widgets.selected_point(event)
        clicked = images.channel_at(point, layer.shape, used_columns) if point else None
        if clicked is not None and st.session_state.get(clicked_key) != clicked:
            st.session_state[channel_key] = clicked
        st.session_state[clicked_key] = clicked
        with zoom_col:
            channel = st.number_input(
                "Channel to enlarge", min_value=0, max_value=channels - 1, key=channel_key
            )
            values = layer.values[channel]
            st.plotly_chart(
                images.heatmap_figure(values, f"channel {channel}", height=240),
                key=f"dl.act.zoom.{variant}.{index}",
            )
            st.caption(
                f"min {values.min():.3f} · max {values.max():.3f} · "
                f"mean {values.mean():.3f} · active {(values > 0).mean():.0%}"
            )
