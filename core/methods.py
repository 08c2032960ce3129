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

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from core.inputs import IMAGE_SIDE, black_baseline
from core.models import block_output, conv_layers

IG_STEPS = 50
OCCLUSION_WINDOW = 4
OCCLUSION_STRIDE = 2

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
