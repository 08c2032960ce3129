"""Why a model decided: conv-block activations and Captum attributions for one input.

Everything here takes a *normalised* input ``[1, 1, 28, 28]`` (or ``[N, 1, 28, 28]`` for the batch
functions) and returns NumPy arrays the dashboard can draw directly.

Thread safety: Captum attaches forward hooks to the model it explains, and the dashboard shares one
cached model between all sessions. Every function here that hooks or back-propagates holds
:func:`model_lock` for that model, so concurrent sessions never see each other's hooks. Code that
runs plain forward passes on a shared model while another session may be explaining it should take
the same lock. Gradients are taken with ``torch.autograd.grad`` (Captum), so no ``.grad`` ever
accumulates on the shared parameters.

Blank input: a uniform image (empty canvas) has nothing to explain. Captum would return all-zero
or artefact maps for it (and ``visualize_image_attr`` asserts on all-zero maps), so the
attribution functions return an all-zero map for a blank input by contract; callers should check
:func:`is_blank` first and ask the user to draw a digit.

The methods themselves, with their labels and notes, are the registry in :mod:`core.methods`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.inputs import IMAGE_SIDE, MNIST_NORMALIZATION, black_baseline
from core.locks import locked_eval, model_lock
from core.methods import IG_STEPS, integrated_gradients_with_delta, method_spec
from core.models import block_activations, block_output, conv_layers

__all__ = [
    "MNIST_NORMALIZATION",
    "LayerActivation",
    "activations",
    "attribute",
    "attribute_batch",
    "black_baseline",
    "conv_layer_names",
    "gradcam",
    "integrated_gradients",
    "is_blank",
    "model_lock",
]

BLANK_RANGE = 1e-3


@dataclass(frozen=True)
class LayerActivation:
    """Feature maps of one conv block: ``values`` is the block's LeakyReLU output ``[C, H, W]``.

    ``name`` is the block's conv layer (as listed by :func:`conv_layer_names`), so the same name
    selects the layer for :func:`gradcam`.
    """

    name: str
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """``(channels, height, width)``."""
        return tuple(self.values.shape)


def conv_layer_names(model: nn.Module) -> list[str]:
    """Qualified names of the conv layers, input to output (``features.block1.conv``, ...)."""
    return list(conv_layers(model))


def _activation_names(model: nn.Module) -> dict[str, str]:
    """Map each block activation's module name to the conv layer name it is reported under."""
    convs = conv_layers(model)
    names = {}
    for act_name in block_activations(model):
        conv_name = f"{act_name.rpartition('.')[0]}.conv"
        names[act_name] = conv_name if conv_name in convs else act_name
    return names


def _check_input(x: torch.Tensor, batch: bool = False) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 4 or x.shape[1:] != (1, IMAGE_SIDE, IMAGE_SIDE) or (not batch and len(x) != 1):
        expected = "[N, 1, 28, 28]" if batch else "[1, 1, 28, 28]"
        raise ValueError(f"Expected a normalised {expected} tensor, got {list(x.shape)}.")
    return x.detach().float().clone()


def is_blank(x: torch.Tensor) -> bool:
    """True when a (normalised) image is uniform: an empty canvas, nothing to predict or explain."""
    return bool((x.max() - x.min()).abs().item() <= BLANK_RANGE)


def _blank_rows(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return (flat.max(1).values - flat.min(1).values).abs() <= BLANK_RANGE


def activations(model: nn.Module, x: torch.Tensor) -> list[LayerActivation]:
    """Every conv block's LeakyReLU output for one normalised input, input to output.

    Forward hooks are removed in a ``finally`` block, also when the forward pass raises.
    """
    x = _check_input(x)
    names = _activation_names(model)
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured[name] = output.detach()

        return hook

    with locked_eval(model):
        handles = [modules[name].register_forward_hook(recorder(name)) for name in names]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for handle in handles:
                handle.remove()
    return [
        LayerActivation(name=label, values=captured[act][0].float().numpy().copy())
        for act, label in names.items()
        if act in captured
    ]


def _targets(targets: int | Sequence[int] | torch.Tensor, n: int) -> list[int]:
    if isinstance(targets, int | np.integer):
        values = [int(targets)] * n
    else:
        values = [int(t) for t in torch.as_tensor(targets).flatten().tolist()]
    if len(values) != n:
        raise ValueError(f"Got {len(values)} targets for {n} inputs.")
    for target in values:
        if not 0 <= target < 10:
            raise ValueError(f"Target class must be in 0..9, got {target}.")
    return values


def attribute_batch(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    targets: int | Sequence[int] | torch.Tensor,
    *,
    layer: str | None = None,
    normalization: dict[str, float] | None = None,
    relu: bool = True,
) -> np.ndarray:
    """Attribution maps ``[N, 28, 28]`` (float32) for a normalised batch, one target per image.

    Same semantics as :func:`attribute`; each map is independent of the rest of the batch
    (BatchNorm is in eval mode). Blank images get all-zero maps.
    """
    spec = method_spec(method)
    x = _check_input(x, batch=True)
    target_list = _targets(targets, len(x))
    if spec.needs_layer:
        if layer is None and not conv_layer_names(model):
            raise ValueError(f"{spec.label} needs a conv layer; this model has none.")
        if layer is not None:
            block_output(model, layer)
    blank = _blank_rows(x).numpy()
    if blank.all():
        return np.zeros((len(x), IMAGE_SIDE, IMAGE_SIDE), np.float32)
    with locked_eval(model):
        maps = spec.run(
            model,
            x,
            target_list,
            layer=layer if spec.needs_layer else None,
            normalization=normalization,
            relu=relu,
        )
    result = maps.detach().sum(dim=1).float().numpy().astype(np.float32)
    result[blank] = 0.0
    return result


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: int,
    *,
    layer: str | None = None,
    normalization: dict[str, float] | None = None,
    relu: bool = True,
) -> np.ndarray:
    """Attribution map ``[28, 28]`` (float32) of logit ``target`` for one normalised input.

    Methods (:data:`core.methods.METHODS`), all from Captum, all explaining the target *logit*:

    - ``gradcam``: ``LayerGradCam`` on conv ``layer``, by default the last one (see
      :func:`gradcam`; ``relu`` only applies here).
    - ``integrated_gradients``: 50 Gauss-Legendre steps from the black image, whose normalised value
      is ``(0 - mean) / std`` (``normalization`` of the checkpoint; MNIST's statistics when None).
      Signed; sums to ``logit(x) - logit(black)`` (completeness).
    - ``saliency``: absolute input gradient (non-negative).
    - ``occlusion``: drop of the target logit when a 4×4 patch (stride 2) is set to black; signed,
      positive where the patch supported the target.

    A blank (uniform) input returns an all-zero map; check :func:`is_blank` first.
    """
    return attribute_batch(
        model, x, method, [target], layer=layer, normalization=normalization, relu=relu
    )[0]


def gradcam(
    model: nn.Module, x: torch.Tensor, layer: str, target: int, *, relu: bool = True
) -> np.ndarray:
    """Captum ``LayerGradCam`` map ``[28, 28]`` (float32) of logit ``target`` at conv ``layer``.

    The map is computed on the block's LeakyReLU output (the feature maps :func:`activations`
    shows) and upsampled bilinearly with ``LayerAttribution.interpolate``, so every conv layer,
    including a 7×7 last map, can be overlaid on the 28×28 digit.

    ReLU *is* applied (``relu_attributions=True``), unlike Captum's default: Grad-CAM as published
    keeps only regions that raise the class score, the map is non-negative and overlays with one
    colour scale. Pass ``relu=False`` for the signed map (negative = evidence against ``target``).
    """
    return attribute(model, x, "gradcam", target, layer=layer, relu=relu)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    normalization: dict[str, float] | None = None,
    n_steps: int = IG_STEPS,
) -> tuple[np.ndarray, float]:
    """Integrated Gradients map ``[28, 28]`` from the black baseline, and Captum's convergence delta.

    The delta is ``sum(map) - (logit(x) - logit(black))``: how far the integral approximation is
    from completeness; more steps make it smaller.
    """
    x = _check_input(x)
    target_list = _targets(target, 1)
    with locked_eval(model):
        maps, delta = integrated_gradients_with_delta(model, x, target_list, normalization, n_steps)
    return maps.detach()[0, 0].float().numpy().copy(), float(delta.detach()[0])
