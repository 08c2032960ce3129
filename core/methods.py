"""The attribution methods, one registry entry each: what the engine runs and what pages show.

Every entry of :data:`METHODS` says how the method is labelled, whether its maps are signed
(positive = evidence for the target, negative = against) or a non-negative importance, whether it
needs a conv layer, a one-line note for the page, and the function that computes it. The explain
engine (:mod:`core.explain`), the Grad-CAM & attributions page, the benchmark and the
parametrised tests all iterate over this registry, so a new method is one entry here.

Every run function takes a *normalised* batch ``[N, 1, 28, 28]`` with the model already in eval
mode under its lock (the engine's job) and returns maps ``[N, 1, 28, 28]`` of the target *logit*.

Guided Backprop and Guided Grad-CAM are deliberately absent: they only patch ``nn.ReLU``, so on
these LeakyReLU models they silently degrade to plain gradients, and they fail the Adebayo et al.
(2018) sanity checks anyway (see ``core.sanity``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    LayerGradientXActivation,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from core.inputs import IMAGE_SIDE, black_baseline, check_normalization
from core.models import block_output, conv_layers

IG_STEPS = 50
OCCLUSION_WINDOW = 4
OCCLUSION_STRIDE = 2
# SmoothGrad (Smilkov et al. 2017): noise of 15% of the input range, averaged over 16 samples.
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15
# GradientSHAP: 16 samples between the black image and noisy copies of it.
GRADSHAP_SAMPLES = 16
GRADSHAP_NOISE = 0.1
NOISE_SEED = 0

RunFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class AttributionMethod:
    """One attribution method: ``run(model, x, targets, *, layer, normalization, relu)``."""

    key: str
    label: str
    signed: bool
    needs_layer: bool
    note: str
    run: RunFn
    # Sampling methods draw noise from a fixed seed: the same batch gives the same maps, but a
    # digit's map depends on the batch it was computed in.
    stochastic: bool = False


def _gradcam(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    module = block_output(model, layer or list(conv_layers(model))[-1])
    maps = LayerGradCam(model, module).attribute(x, target=targets, relu_attributions=relu)
    return LayerAttribution.interpolate(maps, (IMAGE_SIDE, IMAGE_SIDE), interpolate_mode="bilinear")


def _hirescam(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): gradient × activation summed over channels, upsampled.

    Unlike Grad-CAM it does not average the gradient over positions first, so the map is
    faithful to what each position contributes through a dense head.
    """
    module = block_output(model, layer or list(conv_layers(model))[-1])
    maps = LayerGradientXActivation(model, module).attribute(x, target=targets)
    maps = maps.sum(dim=1, keepdim=True)
    if relu:
        maps = maps.clamp(min=0)
    return LayerAttribution.interpolate(maps, (IMAGE_SIDE, IMAGE_SIDE), interpolate_mode="bilinear")


def _std(normalization: Mapping[str, float] | None) -> float:
    """The normalisation's std: one unit of [0, 1] pixel range is ``1 / std`` once normalised."""
    return check_normalization(normalization)[1]


def _smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    tunnel = NoiseTunnel(Saliency(model))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NOISE_SEED)
        return tunnel.attribute(
            x.requires_grad_(True),
            nt_type="smoothgrad",
            nt_samples=SMOOTHGRAD_SAMPLES,
            nt_samples_batch_size=SMOOTHGRAD_SAMPLES * len(x),
            stdevs=SMOOTHGRAD_NOISE / _std(normalization),
            target=targets,
            abs=True,
        )


def _deeplift(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    baseline = torch.full_like(x, black_baseline(normalization))
    with warnings.catch_warnings():
        # Captum announces that it hooks the activations (removed afterwards) on every call.
        warnings.simplefilter("ignore", UserWarning)
        return DeepLift(model).attribute(x.requires_grad_(True), baselines=baseline, target=targets)


def _gradient_shap(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    black = torch.full_like(x[:1], black_baseline(normalization))
    generator = torch.Generator().manual_seed(0)
    noise = (
        torch.rand((4, *x.shape[1:]), generator=generator) * GRADSHAP_NOISE / _std(normalization)
    )
    baselines = torch.cat([black, black + noise])
    # Captum draws the path positions from NumPy's global generator: seed it here and give the
    # caller's state back, as fork_rng does for torch.
    numpy_state = np.random.get_state()
    try:
        np.random.seed(NOISE_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(NOISE_SEED)
            return GradientShap(model).attribute(
                x,
                baselines=baselines,
                n_samples=GRADSHAP_SAMPLES,
                stdevs=GRADSHAP_NOISE / _std(normalization),
                target=targets,
            )
    finally:
        np.random.set_state(numpy_state)


def integrated_gradients_with_delta(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    normalization: Mapping[str, float] | None,
    n_steps: int = IG_STEPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients from the black image, with Captum's convergence delta per input."""
    baseline = torch.full_like(x, black_baseline(normalization))
    return IntegratedGradients(model).attribute(
        x,
        baselines=baseline,
        target=targets,
        n_steps=n_steps,
        internal_batch_size=max(n_steps, 1) * len(x),
        return_convergence_delta=True,
    )


def _integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    return integrated_gradients_with_delta(model, x, targets, normalization)[0]


def _saliency(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    return Saliency(model).attribute(x.requires_grad_(True), target=targets, abs=True)


def _occlusion(
    model: nn.Module,
    x: torch.Tensor,
    targets: list[int],
    *,
    layer: str | None,
    normalization: Mapping[str, float] | None,
    relu: bool = True,
) -> torch.Tensor:
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(1, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
        strides=(1, OCCLUSION_STRIDE, OCCLUSION_STRIDE),
        baselines=black_baseline(normalization),
        target=targets,
        perturbations_per_eval=max(1, 256 // len(x)),
    )


METHODS: dict[str, AttributionMethod] = {
    method.key: method
    for method in (
        AttributionMethod(
            "gradcam",
            "Grad-CAM",
            signed=False,
            needs_layer=True,
            note="class-weighted feature maps of the chosen layer, upsampled (positive part)",
            run=_gradcam,
        ),
        AttributionMethod(
            "hirescam",
            "HiResCAM",
            signed=False,
            needs_layer=True,
            note="gradient × activation of the chosen layer, summed over channels (positive part)",
            run=_hirescam,
        ),
        AttributionMethod(
            "integrated_gradients",
            "Integrated Gradients",
            signed=True,
            needs_layer=False,
            note="path integral from the black image; red for, blue against",
            run=_integrated_gradients,
        ),
        AttributionMethod(
            "saliency",
            "Saliency",
            signed=False,
            needs_layer=False,
            note="absolute input gradient of the target logit",
            run=_saliency,
        ),
        AttributionMethod(
            "smoothgrad",
            "SmoothGrad",
            signed=False,
            needs_layer=False,
            note="absolute input gradient averaged over 16 noisy copies of the digit",
            run=_smoothgrad,
            stochastic=True,
        ),
        AttributionMethod(
            "deeplift",
            "DeepLIFT",
            signed=True,
            needs_layer=False,
            note="contributions relative to the black image (rescale rule); red for, blue against",
            run=_deeplift,
        ),
        AttributionMethod(
            "gradient_shap",
            "GradientSHAP",
            signed=True,
            needs_layer=False,
            note="expected gradients from noisy black baselines; red for, blue against",
            run=_gradient_shap,
            stochastic=True,
        ),
        AttributionMethod(
            "occlusion",
            "Occlusion",
            signed=True,
            needs_layer=False,
            note="logit drop when a 4×4 patch is blacked out; red for, blue against",
            run=_occlusion,
        ),
    )
}


def method_spec(key: str) -> AttributionMethod:
    """The registry entry of ``key``; ``ValueError`` naming the choices if unknown."""
    if key not in METHODS:
        raise ValueError(f"Unknown attribution method {key!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[key]
