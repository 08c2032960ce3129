"""Where a digit lies among the others: the model's feature space as a map (PCA live, t-SNE
precomputed), the nearest training and test digits, and the smallest change that flips the answer."""

from functools import partial

import numpy as np
import streamlit as st

from core.counterfactual import BUDGETS
from core.data import DataUnavailableError
from core.embedding import PLACE_K, EmbeddingFileError, nearest
from dashboard import charts, hover_thumbnails, images, shell, state, widgets
from dashboard import embedding_results as er

PCA, TSNE = "PCA", "t-SNE"
TRUE, PREDICTED = "true digit", "prediction"

shell.page_setup("embedding")

with shell.guard():
    variant = widgets.model_picker()
    try:
        found = er.embedding(variant)
    except EmbeddingFileError as error:
        st.info(
            f"**No map for this model yet.** {shell.escape_markdown(error)} {er.RUN_HINT}",
            icon=":material/scatter_plot:",
        )
        st.stop()
    current = state.current_input()
    here = er.location(current.image, variant) if current is not None else None

    layout_col, colour_col, ood_col = st.columns(3, vertical_alignment="bottom")
    layout = layout_col.segmented_control(
        "Layout", [PCA, TSNE], default=PCA, required=True, key="dl.emb.layout"
    )
    colour = colour_col.segmented_control(
        "Colour by", [TRUE, PREDICTED], default=TRUE, required=True, key="dl.emb.colour"
    )
    with_ood = ood_col.toggle("Show out-of-distribution examples", key="dl.emb.ood")
    column = slice(0, 2) if layout == PCA else slice(2, 4)
    xy = found.test_bank[:, :2] if layout == PCA else found.tsne
    share = found.pca.variance_ratio
    title = (
        f"PCA of the features: PC1 {share[0]:.0%} and PC2 {share[1]:.0%} of their variance"
        if layout == PCA
        else "t-SNE of the features (perplexity 30, precomputed)"
    )
    ood = {name: p[:, column] for name, p in er.ood_points(variant).items()} if with_ood else None
    spot = None if here is None else (here.pca if layout == PCA else here.tsne)

    map_col, side_col = st.columns([3, 1])
    with map_col:
        key = f"dl.emb.map.{variant}.{layout}"
        figure = er.map_figure(
            xy,
            found.test_labels,
            found.test_predictions,
            colour == TRUE,
            current=spot,
            ood=ood,
        )
        st.markdown(f"**{title}**")  # above the chart: it wraps on a phone, a Plotly title won't
        st.plotly_chart(
            figure,
            key=key,
            on_select=partial(er.use_clicked, key),
            selection_mode="points",
            config={"scrollZoom": True},
        )
    with side_col:
        if current is None or here is None:
            st.info(
                "Draw a digit, or click a point of the map, to place it among the others.",
                icon=":material/touch_app:",
            )
        else:
            st.image(images.to_pixels(current.image, 160), width=160)
            st.markdown(f"**The current digit** ({current.describe()})")
            st.metric(
                "prediction",
                int(here.probabilities.argmax()),
                f"{here.probabilities.max():.1%} confident",
                delta_arrow="off",
            )
            st.caption(
                "The star: projected exactly on the PCA map; on the t-SNE map, the mean position "
                f"of its {PLACE_K} nearest test digits. Click a point to make that digit current."
            )
        if hover_thumbnails.mount(found.test_labels, key="dl.emb.hover"):
            st.caption("Hover a point to see its digit.")
        else:
            st.caption(
                "Hover thumbnails need the MNIST test images the map was built from, which are "
                "not available here: hovering shows each digit's index, label and prediction."
            )
    st.download_button("Map coordinates (CSV)", er.map_csv(xy, found.test_labels, found.test_predictions),
                       file_name=f"embedding_{variant}_{layout}.csv", mime="text/csv", icon=":material/download:")  # fmt: skip
    st.caption(
        f"Each point is one of the {len(xy):,} MNIST test digits, placed by {widgets.model_label(variant)}'s "
        "features (the input of its last dense layer; for logreg the 784 pixels). Rings mark its "
        "mistakes. Click a legend entry to hide a digit; scroll to zoom."
    )

    current = state.require_input()
    here = er.location(current.image, variant)
    st.header("Nearest neighbours")
    k = st.slider("Neighbours of each kind", 4, 16, 8, key="dl.emb.k")
    table = er.neighbour_table(found, here, k, exclude=current.test_index)
    try:
        bank_pictures = er.train_images(found)
    except DataUnavailableError as error:
        bank_pictures = None
        st.info(
            "**The MNIST training images are not available here**: labels and distances only. "
            + shell.escape_markdown(error),
            icon=":material/cloud_off:",
        )
    for col, bank in zip(st.columns(2), ("training", "test"), strict=True):
        rows = table[table["bank"] == bank]
        col.subheader(f"Nearest {bank} digits")
        pictures = er.neighbour_pictures(rows, bank_pictures)
        if pictures is None:
            col.dataframe(rows.drop(columns="position"), hide_index=True)
        else:
            captions = [f"{r.label} · d={r.distance:.2f}" for r in rows.itertuples()]
            col.image([images.to_pixels(p, 72) for p in pictures], caption=captions, width=72)
    st.download_button("Neighbours (CSV)", table.drop(columns="position").to_csv(index=False).encode(),
                       file_name=f"neighbours_{variant}.csv", mime="text/csv", icon=":material/download:")  # fmt: skip
    st.caption(
        f"L2 distance in the model's feature space, in its top {found.pca.components.shape[0]} "
        f"principal directions ({share.sum():.1%} of the variance). Training digits: a fixed, "
        f"seeded subset of {len(found.train_labels):,}; test digits: all {len(xy):,}."
    )

    st.header("What would change the answer")
    said = int(here.probabilities.argmax())
    options = [int(d) for d in np.argsort(-here.probabilities, kind="stable") if d != said]
    target = st.selectbox("Make the model say", options, key=f"dl.emb.target.{said}")
    change = er.change_to(current.image, variant, target)
    real_pool = np.flatnonzero(found.test_labels == target)
    real_pool = real_pool[real_pool != current.test_index]
    real = int(real_pool[nearest(found.test_bank[real_pool], here.coords, 1)[0][0]])
    real_picture = er.test_image(real)
    cols = st.columns(4)
    changed_to = int(change.probabilities.argmax())
    cols[0].image(
        images.to_pixels(current.image, 140), caption=f"the digit: it says {said}", width=140
    )
    cols[1].image(
        images.to_pixels(change.image, 140), caption=f"changed: it says {changed_to}", width=140
    )
    cols[2].image(images.signed_overlay_pixels(current.image, change.delta, 140), width=140,
                  caption=f"the change (L2 {change.l2:.2f}): red added, blue removed")  # fmt: skip
    if real_picture is not None:
        cols[3].image(
            images.to_pixels(real_picture, 140),
            caption=f"nearest real {target}: test #{real}",
            width=140,
        )
    else:
        cols[3].markdown(f"Nearest real {target}: test image #{real} (image not available here).")
    st.plotly_chart(
        charts.probability_figure({variant: change.probabilities}, height=220),
        key="dl.emb.cf.probs",
    )
    ink = float(np.linalg.norm(current.image))
    if change.reached:
        st.markdown(
            f"A change of L2 size **{change.l2:.2f}** (the digit's own ink: {ink:.1f}) makes "
            f"{variant} say **{target}** with {change.probabilities[target]:.1%}."
        )
    else:
        st.warning(
            f"Within an L2 budget of {BUDGETS[-1]:g}, {variant} could not be made to say {target}."
        )
    st.info(
        "A tiny change that flips the answer is a property of the **model**, not of the drawing: "
        "it shows how close the model's decision boundary runs to real digits. Compare the "
        "changed digit with the nearest real one: a person would rarely read them alike.",
        icon=":material/lightbulb:",
    )
