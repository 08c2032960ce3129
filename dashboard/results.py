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
from core.faithfulness import BASELINE_MAPS, Faithfulness, edge_map, faithfulness, random_map
from core.inputs import image_to_input
from core.methods import METHODS
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
    image: np.ndarray, keep: float, directory: str, signature: tuple
) -> dict[str, Prediction]:
    return loaders.load_store(directory, signature).predictor.predict(image, keep=keep)


def predictions(image: np.ndarray, keep: float) -> dict[str, Prediction]:
    """Calibrated ``core.predict.Prediction`` (top-3, verdict and reason) of every loaded model,
    each rejecting at the threshold that keeps ``keep`` of real digits."""
    loaders.predictor()
    return _predictions(image, float(keep), *_directory())


def thresholds(keep: float) -> dict[str, float]:
    """Each loaded model's calibrated-confidence threshold that keeps ``keep`` of real digits."""
    pred = loaders.predictor()
    return {variant: pred.threshold_for(variant, keep) for variant in pred.models}


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


@st.cache_data(max_entries=32, show_spinner="Measuring how faithful each map is…")
def _faithfulness(
    image: np.ndarray,
    variant: str,
    target: int,
    layer: str | None,
    road: bool,
    directory: str,
    signature: tuple,
) -> dict[str, Faithfulness]:
    maps = {
        method.label: _attribution(
            image, variant, key, target, layer if method.needs_layer else None, directory, signature
        )
        for key, method in METHODS.items()
        if layer is not None or not method.needs_layer
    }
    maps[BASELINE_MAPS["random"]] = random_map()
    maps[BASELINE_MAPS["edges"]] = edge_map(image)
    model, metadata = loaders.cached_model(variant, directory, signature)
    return faithfulness(model, image, target, maps, metadata["normalization"], road=road)


def map_faithfulness(
    image: np.ndarray, variant: str, target: int, layer: str | None, road: bool = False
) -> dict[str, Faithfulness]:
    """Deletion/insertion curves (ROAD with ``road``) of every method's map and the two
    baselines, keyed by label (cached per image, model, target, layer)."""
    return _faithfulness(image, variant, int(target), layer, bool(road), *_directory())


def last_conv_layer(variant: str) -> str | None:
    """Name of a model's last conv layer (the usual Grad-CAM layer); None without conv layers."""
    layers = conv_layer_names(loaders.model_and_metadata(variant)[0])
    return layers[-1] if layers else None


def forward_latency_ms(variant: str, image: np.ndarray) -> float:
    """Median wall time (ms) of one forward pass of ``variant`` on ``image``, measured now."""
    model, metadata = loaders.model_and_metadata(variant)
    return forward_pass_timing(model, image_to_input(image, metadata["normalization"])).p50


@st.cache_data(max_entries=8, show_spinner=False)
def _ood_scores(variant: str, directory: str, signature: tuple) -> dict[str, SetScores]:
    evaluation = loaders.cached_eval_file(variant, directory, signature)
    logits = {name: entry.logits for name, entry in evaluation.ood.items()}
    return score_sets(evaluation.logits, logits, evaluation.temperature)


def ood_scores(variant: str) -> dict[str, SetScores]:
    """Every OOD set's scores (MSP calibrated with the checkpoint's temperature) and AUROCs, from
    the stored logits with ``core.ood.score_sets``."""
    return _ood_scores(variant, *_directory())
