"""core.explain: activations and Captum attributions (invariants, hooks, locking, blank input)."""

from __future__ import annotations

import copy
import gc
import re
import threading
import warnings
import weakref
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from explain_helpers import (
    NORMALIZATION,
    digit_batch,
    digit_input,
    hook_count,
    one_torch_thread,
    seeded_model,
)
from torch.nn.modules import module as module_globals

from core.explain import (
    LayerActivation,
    activations,
    attribute,
    attribute_batch,
    black_baseline,
    conv_layer_names,
    gradcam,
    integrated_gradients,
    is_blank,
    model_lock,
)
from core.methods import METHODS
from core.models import VARIANTS

EXPECTED_LAYERS = {
    "cnn1": ["features.block1.conv"],
    "cnn2": ["features.block1.conv", "features.block2.conv"],
    "cnn3": ["features.block1.conv", "features.block2.conv", "features.block3.conv"],
    "logreg": [],
    "mlp": [],
}
EXPECTED_SHAPES = {
    "cnn1": [(32, 28, 28)],
    "cnn2": [(32, 28, 28), (64, 14, 14)],
    "cnn3": [(32, 28, 28), (64, 14, 14), (128, 7, 7)],
    "logreg": [],
    "mlp": [],
}


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models() -> dict:
    return {variant: seeded_model(variant) for variant in VARIANTS}


def no_global_hooks() -> bool:
    return not (
        module_globals._global_forward_hooks
        or module_globals._global_forward_pre_hooks
        or module_globals._global_backward_hooks
    )


def live_tensors() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


def reference_gradcam(model, x, layer_module, target, relu=True) -> np.ndarray:
    """Grad-CAM from its definition (Selvaraju et al.), independent of Captum."""
    saved = {}
    handle = layer_module.register_forward_hook(lambda _m, _i, out: saved.update(a=out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    grads = torch.autograd.grad(logits[0, target], saved["a"])[0]
    cam = (grads.mean(dim=(2, 3), keepdim=True) * saved["a"]).sum(1, keepdim=True)
    if relu:
        cam = F.relu(cam)
    return F.interpolate(cam, (28, 28), mode="bilinear")[0, 0].detach().numpy()


@pytest.mark.parametrize("variant", VARIANTS)
def test_conv_layer_names_in_order(models, variant):
    assert conv_layer_names(models[variant]) == EXPECTED_LAYERS[variant]


@pytest.mark.parametrize("variant", VARIANTS)
def test_activations_are_block_leakyrelu_outputs(models, variant):
    model = models[variant]
    x = digit_input()
    result = activations(model, x)
    assert [a.name for a in result] == EXPECTED_LAYERS[variant]
    assert [a.shape for a in result] == EXPECTED_SHAPES[variant]
    assert all(isinstance(a, LayerActivation) and a.values.dtype == np.float32 for a in result)
    with torch.no_grad():
        h = x
        for index, block in enumerate(getattr(model, "features", []), start=1):
            expected = block.act(block.bn(block.conv(h)))
            np.testing.assert_allclose(result[index - 1].values, expected[0].numpy(), atol=1e-6)
            h = block(h)
    assert hook_count(model) == 0


def test_activations_reject_wrong_shape(models):
    with pytest.raises(ValueError, match=r"\[1, 1, 28, 28\]"):
        activations(models["cnn1"], torch.zeros(1, 28, 28))
    with pytest.raises(ValueError):
        activations(models["cnn1"], torch.zeros(2, 1, 28, 28))


def _break_head(model, monkeypatch):
    def explode(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model.head.fc2, "forward", explode)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: activations(m, x),
        lambda m, x: gradcam(m, x, "features.block2.conv", 3),
        lambda m, x: attribute(m, x, "integrated_gradients", 3),
        lambda m, x: attribute(m, x, "saliency", 3),
        lambda m, x: attribute(m, x, "occlusion", 3),
    ],
    ids=["activations", "gradcam", "integrated_gradients", "saliency", "occlusion"],
)
def test_hooks_removed_after_exception(call, monkeypatch):
    model = seeded_model("cnn3")
    model.train()
    _break_head(model, monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        call(model, digit_input())
    assert hook_count(model) == 0
    assert no_global_hooks()
    assert all(m.training for m in model.modules()), "training mode must be restored"
    assert model_lock(model).acquire(blocking=False), "lock must be released"
    model_lock(model).release()


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcam_matches_definition_on_every_layer(models, variant):
    model = models[variant]
    x = digit_input("zero")
    for layer in conv_layer_names(model):
        act = dict(model.named_modules())[layer.replace(".conv", ".act")]
        for relu in (True, False):
            ours = gradcam(model, x, layer, 4, relu=relu)
            assert ours.shape == (28, 28) and ours.dtype == np.float32
            np.testing.assert_allclose(
                ours, reference_gradcam(model, x, act, 4, relu), rtol=1e-4, atol=1e-7
            )
        assert gradcam(model, x, layer, 4).min() >= 0.0, "ReLU is applied by default"


def test_gradcam_signed_map_has_both_signs(models):
    signed = gradcam(models["cnn3"], digit_input(), "features.block1.conv", 1, relu=False)
    assert signed.min() < 0 < signed.max()


def test_gradcam_depends_on_target(models):
    x = digit_input()
    a = gradcam(models["cnn2"], x, "features.block2.conv", 1, relu=False)
    b = gradcam(models["cnn2"], x, "features.block2.conv", 7, relu=False)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("method", [k for k, m in METHODS.items() if not m.stochastic])
def test_batch_size_invariance(models, method):
    model = models["cnn3"]
    batch = digit_batch()
    targets = [7, 0, 1, 3, 9, 5]
    if method in ("integrated_gradients", "occlusion", "deeplift"):
        batch, targets = batch[:3], targets[:3]
    for layer in conv_layer_names(model) if METHODS[method].needs_layer else [None]:
        together = attribute_batch(
            model, batch, method, targets, layer=layer, normalization=NORMALIZATION
        )
        assert together.shape == (len(batch), 28, 28)
        for i in range(len(batch)):
            alone = attribute(
                model,
                batch[i : i + 1],
                method,
                targets[i],
                layer=layer,
                normalization=NORMALIZATION,
            )
            np.testing.assert_allclose(together[i], alone, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", [k for k, m in METHODS.items() if m.stochastic])
def test_sampling_methods_are_reproducible_and_leave_the_global_rng_alone(models, method):
    model, x = models["cnn2"], digit_input()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = attribute(model, x, method, 7, normalization=NORMALIZATION)
    assert torch.rand(1) == expected_next  # the caller's random stream is untouched
    np.testing.assert_array_equal(
        first, attribute(model, x, method, 7, normalization=NORMALIZATION)
    )
    assert first.any() and np.isfinite(first).all()


def test_deeplift_is_complete_against_the_black_baseline(models):
    """DeepLIFT's rescale rule sums to logit(x) - logit(black), like Integrated Gradients."""
    model, x = models["cnn3"], digit_input("seven")
    attribution = attribute(model, x, "deeplift", 7, normalization=NORMALIZATION)
    with torch.no_grad():
        black = torch.full_like(x, black_baseline(NORMALIZATION))
        gap = (model(x)[0, 7] - model(black)[0, 7]).item()
    assert attribution.sum() == pytest.approx(gap, rel=1e-3, abs=1e-3)


def test_hirescam_is_gradient_times_activation_summed_over_channels(models):
    model, x = models["cnn3"], digit_input("seven")
    layer = "features.block3.conv"
    raw = attribute(model, x, "hirescam", 7, layer=layer, relu=False)
    module = model.features.block3.act
    captured = {}
    handle = module.register_forward_hook(lambda m, i, o: captured.update(out=o))
    try:
        logits = model(x.clone().requires_grad_(True))
        (grad,) = torch.autograd.grad(logits[0, 7], captured["out"])
    finally:
        handle.remove()
    expected = (grad * captured["out"]).sum(1, keepdim=True).detach()
    expected = F.interpolate(expected, (28, 28), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(raw, expected.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_integrated_gradients_completeness(models, variant):
    model = models[variant]
    x = digit_input("seven")
    attribution, delta = integrated_gradients(model, x, 7, normalization=NORMALIZATION, n_steps=128)
    with torch.no_grad():
        black = torch.full_like(x, black_baseline(NORMALIZATION))
        gap = (model(x)[0, 7] - model(black)[0, 7]).item()
    assert abs(gap) > 1e-3
    assert attribution.sum() == pytest.approx(gap, rel=0.02, abs=1e-3)
    assert abs(delta) <= 0.02 * abs(gap) + 1e-3
    assert delta == pytest.approx(attribution.sum() - gap, abs=1e-4)


def test_default_integrated_gradients_is_nearly_complete(models):
    model = models["cnn3"]
    x = digit_input("zero")
    map_ = attribute(model, x, "integrated_gradients", 0, normalization=NORMALIZATION)
    with torch.no_grad():
        black = torch.full_like(x, black_baseline(NORMALIZATION))
        gap = (model(x)[0, 0] - model(black)[0, 0]).item()
    assert map_.sum() == pytest.approx(gap, rel=0.05, abs=2e-3)


def test_integrated_gradients_baseline_is_black_not_mid_grey(models):
    model = models["cnn2"]
    black = torch.full((1, 1, 28, 28), black_baseline(NORMALIZATION))
    black[0, 0, 10:14, 10:14] = 2.0
    map_ = attribute(model, black, "integrated_gradients", 2, normalization=NORMALIZATION)
    outside = np.ones((28, 28), bool)
    outside[10:14, 10:14] = False
    assert np.all(map_[outside] == 0.0), "pixels equal to the black baseline get no attribution"
    assert np.abs(map_[10:14, 10:14]).sum() > 0
    assert black_baseline(NORMALIZATION) == pytest.approx(-0.1307 / 0.3081)


def test_saliency_is_non_negative_gradient_magnitude(models):
    model = models["cnn1"]
    x = digit_input()
    map_ = attribute(model, x, "saliency", 5)
    xx = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(model(xx)[0, 5], xx)[0][0, 0].abs().numpy()
    np.testing.assert_allclose(map_, grad, rtol=1e-5, atol=1e-8)
    assert map_.min() >= 0


def test_occlusion_ignores_regions_far_from_the_ink(models):
    model = models["cnn2"]
    x = digit_input("one")
    map_ = attribute(model, x, "occlusion", 1, normalization=NORMALIZATION)
    assert np.abs(map_[:, :8]).max() < 1e-5, "occluding black background with black changes nothing"
    assert np.abs(map_[5:22, 12:17]).max() > 0


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("value", [black_baseline(NORMALIZATION), 0.0, 2.5])
def test_blank_input_gives_all_zero_map(models, method, value):
    x = torch.full((1, 1, 28, 28), value)
    assert is_blank(x)
    layer = "features.block2.conv" if METHODS[method].needs_layer else None
    map_ = attribute(models["cnn2"], x, method, 3, layer=layer, normalization=NORMALIZATION)
    assert map_.shape == (28, 28) and not map_.any()


def test_blank_rows_zeroed_only_for_blank_images(models):
    batch = torch.cat([digit_input(), torch.full((1, 1, 28, 28), black_baseline(NORMALIZATION))])
    maps = attribute_batch(models["cnn2"], batch, "saliency", [7, 7])
    assert maps[0].any() and not maps[1].any()
    assert not is_blank(digit_input())


def test_bad_arguments_raise_clear_errors(models):
    model, x = models["cnn2"], digit_input()
    with pytest.raises(ValueError, match="Unknown attribution method 'guided_backprop'"):
        attribute(model, x, "guided_backprop", 1)
    with pytest.raises(ValueError, match=re.escape("features.block1.conv, features.block2.conv")):
        gradcam(model, x, "features.block3.conv", 1)
    np.testing.assert_array_equal(
        attribute(model, x, "gradcam", 1), gradcam(model, x, "features.block2.conv", 1)
    )
    with pytest.raises(ValueError, match=re.escape("0..9")):
        attribute(model, x, "saliency", 10)
    with pytest.raises(ValueError, match="2 targets for 6 inputs"):
        attribute_batch(model, digit_batch(), "saliency", [1, 2])
    assert "guided" not in " ".join(METHODS).lower()


def test_training_mode_restored_and_dropout_off(models):
    model = copy.deepcopy(models["cnn3"]).train()
    x = digit_input()
    first = attribute(model, x, "saliency", 7)
    second = attribute(model, x, "saliency", 7)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, attribute(models["cnn3"], x, "saliency", 7), atol=1e-7)
    assert all(m.training for m in model.modules())


def test_no_gradients_accumulate_on_shared_parameters(models):
    model = models["cnn3"]
    for method in METHODS:
        attribute(model, digit_input(), method, 2, layer="features.block3.conv")
    assert all(p.grad is None for p in model.parameters())


def _mixed_calls(model, x) -> list[tuple[str, Callable[[], object]]]:
    """Every kind of call the dashboard makes, as (name, thunk) pairs."""
    calls: list[tuple[str, Callable[[], object]]] = [
        ("activations", lambda: [a.values for a in activations(model, x)]),
        ("ig", lambda: attribute(model, x, "integrated_gradients", 7, normalization=NORMALIZATION)),
        ("saliency", lambda: attribute(model, x, "saliency", 3)),
    ]
    for layer in conv_layer_names(model):
        for target in (1, 7):
            calls.append((f"gradcam {layer} {target}", partial(gradcam, model, x, layer, target)))
    return calls


def test_concurrent_calls_match_serial_results(models):
    model = models["cnn3"]
    inputs = [digit_input("seven", -1), digit_input("zero", 1), digit_input("one", 0)]
    serial = {(i, name): fn() for i, x in enumerate(inputs) for name, fn in _mixed_calls(model, x)}
    results: dict = {}
    errors: list = []
    barrier = threading.Barrier(len(inputs))

    def worker(i: int, x: torch.Tensor) -> None:
        try:
            barrier.wait()
            for name, fn in _mixed_calls(model, x):
                results.setdefault((i, name), []).append(fn())
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i, x)) for i, x in enumerate(inputs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for key, expected in serial.items():
        for got in results[key]:
            if isinstance(expected, list):
                for e, g in zip(expected, got, strict=True):
                    np.testing.assert_array_equal(e, g)
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert hook_count(model) == 0


def test_hooks_and_memory_do_not_grow_over_100_calls(models):
    model = models["cnn3"]
    x = digit_input()
    layers = conv_layer_names(model)
    for _ in range(10):
        gradcam(model, x, layers[-1], 7)
        activations(model, x)
    gc.collect()
    objects_before, tensors_before = len(gc.get_objects()), live_tensors()
    for i in range(100):
        gradcam(model, x, layers[i % 3], i % 10)
        activations(model, x)
        assert hook_count(model) == 0
    gc.collect()
    growth = len(gc.get_objects()) - objects_before
    assert live_tensors() <= tensors_before
    assert growth < 50, f"{growth} Python objects more after 100 calls: something leaks per call"
    assert all(p.grad is None for p in model.parameters())


def test_model_lock_is_per_model_reentrant_and_freed_with_model():
    a, b = seeded_model("cnn1"), seeded_model("cnn1")
    assert model_lock(a) is model_lock(a)
    assert model_lock(a) is not model_lock(b)
    with model_lock(a):
        assert attribute(a, digit_input(), "saliency", 1).shape == (28, 28)
    copy.deepcopy(a)
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None
