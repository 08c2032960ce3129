"""core.precompute: OOD, calibration and risk-coverage results written for the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from explain_helpers import NORMALIZATION, one_torch_thread, seeded_model

from core.checkpoints import metadata_path, save_checkpoint
from core.evalfile import eval_path, read_eval_file
from core.models import VARIANTS, count_parameters
from core.ood import OOD_SETS, SCORES, auroc, msp_score, rejection_rate, set_scores
from core.precompute import OOD_EXAMPLES, evaluate_variant
from core.train import TrainConfig

SMALL_OOD = {"uniform_noise": 40, "letters": 30}


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    with one_torch_thread():
        yield


def save_tiny_checkpoint(directory: Path) -> None:
    model = seeded_model("cnn1")
    metadata = {
        "params": count_parameters(model),
        "normalization": NORMALIZATION,
        "test_accuracy": 0.0,
        "per_class": [],
        "history": [],
        "training": {
            "config": TrainConfig().to_dict(),
            "seed": 0,
            "epochs_run": 0,
            "best_epoch": 0,
            "best_val_accuracy": 0.0,
            "stopped_early": False,
            "seconds": 0.0,
            "train_size": 0,
            "val_size": 64,
            "device": "cpu",
            "threads": 1,
            "torch": torch.__version__,
        },
    }
    save_checkpoint(model, "cnn1", metadata, directory)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, dict]:
    from core.ood import load_ood_set

    directory = tmp_path_factory.mktemp("ckpt")
    save_tiny_checkpoint(directory)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (120, 28, 28), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, 120))
    ood_sets = {name: load_ood_set(name, n) for name, n in SMALL_OOD.items()}
    metadata = evaluate_variant(
        "cnn1",
        directory,
        images[:80],
        labels[:80],
        val_images=images[80:],
        val_labels=labels[80:],
        ood_sets=ood_sets,
        ood_unavailable={"fashion_mnist": "not installed in this test"},
    )
    return directory, metadata


def test_eval_file_holds_every_documented_array(evaluated):
    directory, _ = evaluated
    with np.load(eval_path("cnn1", directory), allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    np.testing.assert_equal(read_eval_file("cnn1", directory).to_arrays(), arrays)
    assert arrays["logits"].shape == arrays["probabilities"].shape == (80, 10)
    assert arrays["labels"].shape == (80,)
    assert arrays["ood_sets"].tolist() == list(SMALL_OOD)
    for name, n in SMALL_OOD.items():
        assert arrays[f"ood_{name}_logits"].shape == (n, 10)
        assert arrays[f"ood_{name}_logits"].dtype == np.float16
        assert arrays[f"ood_{name}_examples"].shape == (min(n, OOD_EXAMPLES), 28, 28)
    assert arrays["temperature"].shape == ()
    assert len(arrays["reliability_edges"]) == len(arrays["reliability_count"]) + 1
    assert arrays["reliability_count"].sum() == arrays["reliability_calibrated_count"].sum() == 80
    assert arrays["risk_coverage_coverage"][-1] == 1.0
    assert eval_path("cnn1", directory).stat().st_size < 200 * 1024


def test_metadata_figures_agree_with_the_stored_arrays(evaluated):
    directory, metadata = evaluated
    arrays = read_eval_file("cnn1", directory).to_arrays()
    on_disk = json.loads(metadata_path("cnn1", directory).read_text())
    assert on_disk["ood"] == json.loads(json.dumps(metadata["ood"]))
    assert on_disk["temperature"] == pytest.approx(float(arrays["temperature"]))
    assert on_disk["calibration"]["val_size"] == 40
    assert on_disk["ood"]["unavailable"] == {"fashion_mnist": "not installed in this test"}
    temperature = float(arrays["temperature"])
    for name in SMALL_OOD:
        entry = on_disk["ood"]["sets"][name]
        for score in SCORES:
            in_scores = set_scores(arrays["logits"], temperature)[score]
            out_scores = set_scores(arrays[f"ood_{name}_logits"].astype(np.float32), temperature)[
                score
            ]
            assert entry[f"auroc_{score}"] == pytest.approx(auroc(in_scores, out_scores), abs=1e-9)
            for coverage, threshold in on_disk["ood"]["thresholds"][score].items():
                assert (in_scores >= threshold).mean() >= float(coverage)
                assert entry[f"rejection_{score}"][coverage] == pytest.approx(
                    rejection_rate(out_scores, threshold), abs=1e-9
                )
    card = (directory / "cnn1.md").read_text()
    assert "fitted temperature" in card


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_eval_files_hold_uncertainty_results(variant, shipped_checkpoints):
    arrays = read_eval_file(variant, shipped_checkpoints).to_arrays()
    meta = json.loads(metadata_path(variant, shipped_checkpoints).read_text())
    assert set(meta["ood"]["sets"]) | set(meta["ood"]["unavailable"]) == set(OOD_SETS)
    temperature = float(arrays["temperature"])
    in_msp = msp_score(arrays["logits"], temperature)
    for name in meta["ood"]["sets"]:
        out = msp_score(arrays[f"ood_{name}_logits"].astype(np.float32), temperature)
        auc = auroc(in_msp, out)
        assert meta["ood"]["sets"][name]["auroc_msp"] == pytest.approx(auc, abs=1e-9)
    calibration = meta["calibration"]
    assert calibration["fitted_on"] == "validation" and calibration["val_size"] == 5000
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-3
    assert eval_path(variant, shipped_checkpoints).stat().st_size < 2 * 1024 * 1024


def _evaluate_into(directory: Path) -> None:
    from core.ood import load_ood_set

    save_tiny_checkpoint(directory)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (120, 28, 28), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, 120))
    canvas = (images[:20].numpy(), labels[:20].numpy())
    evaluate_variant(
        "cnn1",
        directory,
        images[:80],
        labels[:80],
        val_images=images[80:],
        val_labels=labels[80:],
        ood_sets={name: load_ood_set(name, n) for name, n in SMALL_OOD.items()},
        ood_unavailable={},
        canvas_digits=canvas,
    )


def test_evaluation_is_deterministic_to_the_byte(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _evaluate_into(first)
    _evaluate_into(second)
    for name in ("cnn1.json", "cnn1.eval.npz", "cnn1.md", "cnn1.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_operating_point_keeps_its_share_and_is_reported_per_set(tmp_path: Path) -> None:
    _evaluate_into(tmp_path)
    metadata = json.loads(metadata_path("cnn1", tmp_path).read_text())
    rejection = metadata["rejection"]
    assert rejection["fitted_on"] == "validation" and 0 < rejection["default_keep"] < 1
    curve = rejection["curve"]
    assert len(curve["keep"]) == len(curve["threshold"]) and curve["keep"] == sorted(curve["keep"])
    at = rejection["at_default"]
    assert set(at["sets"]) == set(SMALL_OOD)
    assert at["canvas_digits"]["n"] == 20 and 0 <= at["mnist_test"]["kept"] <= 1
    evaluation = read_eval_file("cnn1", tmp_path)
    assert evaluation.canvas_logits.shape == (20, 10) and evaluation.canvas_labels.shape == (20,)
