"""Per-image results, cached by image content: predictions, feature maps, attributions, checks.

Each cached function takes the 28×28 image itself (Streamlit hashes its bytes), the model and
method choices, and the checkpoint directory with its signature, so a replaced checkpoint never
serves stale results. ``max_entries`` keeps memory bounded however many distinct digits arrive.
The computations are ``core``'s; this module only caches them for the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from core.explain import LayerActivation, activations, attribute, conv_layer_names
from core.inputs import image_to_input
from core.ood import SetScores, score_sets
from core.predict import Prediction
from core.sanity import SanityStep, cascading_randomization
from core.timing import forward_pass_timing
from dashboard import loaders


def _directory() -> tuple[str, tuple]:
    directory = loaders.checkpoint_dir()
    return directory, loaders.directory_signature(directory)


@st.cache_data(max_entries=256, show_spinner=False)
def _predictions(
    image: np.ndarray, threshold: float, directory: str, signature: tuple
) -> dict[str, Prediction]:
    return loaders.load_store(directory, signature).predictor.predict(image, threshold)


def predictions(image: np.ndarray, threshold: float = 0.0) -> dict[str, Prediction]:
    """``core.predict.Prediction`` (top-3, verdict at ``threshold``) of every loaded model."""
    loaders.predictor()
    return _predictions(image, float(threshold), *_directory())


@st.cache_data(max_entries=64, show_spinner=False)
def _activations(
    image: np.ndarray, variant: str, directory: str, signature: tuple
) -> list[LayerActivation]:
    model, metadata = loaders.cached_model(variant, directory, signature)
    return activations(model, image_to_input(image, metadata["normalization"]))


def layer_activations(image: np.ndarray, variant: str) -> list[LayerActivation]:
    """Every conv block's feature maps for one image."""
    return _activations(image, variant, *_directory())


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
    model, metadata = loaders.cached_model(variant, directory, signature)
    norm = metadata["normalization"]
    return explainer(
        model, image_to_input(image, norm), method, target, layer=layer, normalization=norm
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
    """An attribution map ``[28, 28]`` (cached per image, model, method, target, layer)."""
    return _attribution(image, variant, method, int(target), layer, *_directory())


@st.cache_data(max_entries=32, show_spinner="Randomising the weights layer by layer…")
def _sanity(
    image: np.ndarray,
    variant: str,
    method: str,
    target: int,
    layer: str | None,
    directory: str,
    signature: tuple,
) -> list[SanityStep]:
    return _explain(
        cascading_randomization, image, variant, method, target, layer, directory, signature
    )


def sanity_steps(
    image: np.ndarray, variant: str, method: str, target: int, layer: str | None = None
) -> list[SanityStep]:
    """Cascading weight-randomisation steps for one map (cached)."""
    return _sanity(image, variant, method, int(target), layer, *_directory())


def last_conv_layer(variant: str) -> str:
    """Name of a model's last conv layer (the usual Grad-CAM layer)."""
    return conv_layer_names(loaders.model_and_metadata(variant)[0])[-1]


def forward_latency_ms(variant: str, image: np.ndarray) -> float:
    """Median wall time (ms) of one forward pass of ``variant`` on ``image``, measured now."""
    model, metadata = loaders.model_and_metadata(variant)
    return forward_pass_timing(model, image_to_input(image, metadata["normalization"])).p50


@st.cache_data(max_entries=8, show_spinner=False)
def _ood_scores(variant: str, directory: str, signature: tuple) -> dict[str, SetScores]:
    evaluation = loaders.cached_eval_file(variant, directory, signature)
    logits = {name: entry.logits for name, entry in evaluation.ood.items()}
    return score_sets(evaluation.logits, logits)


def ood_scores(variant: str) -> dict[str, SetScores]:
    """Every OOD set's scores and AUROCs, from the stored logits with ``core.ood.score_sets``."""
    return _ood_scores(variant, *_directory())
