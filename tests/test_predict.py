"""core.predict: the Predictor API, file predictions and the ``python -m core.predict`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.explain as explain_module
import core.predict as predict_module
from core.checkpoints import CheckpointError, save_checkpoint
from core.inputs import MNIST_NORMALIZATION
from core.locks import model_lock
from core.models import VARIANTS, build_model
from core.predict import (
    Prediction,
    Predictor,
    make_prediction,
    predict_file,
    predict_files,
    printable,
)
from core.preprocess import MAX_UPLOAD_BYTES, InvalidImageError, preprocess
from core.train import to_input
from tests.imagefactory import canvas_rgba, encode, paper_photo, stroke_mask

ROOT = Path(__file__).resolve().parent.parent
# Each variant gets its own normalisation (cycling through three), so mixing them up shows.
_DISTINCT_NORMALIZATIONS = (
    dict(MNIST_NORMALIZATION),
    {"mean": 0.5, "std": 0.25},
    {"mean": 0.0, "std": 0.5},
)
NORMALIZATIONS = {
    variant: _DISTINCT_NORMALIZATIONS[index % len(_DISTINCT_NORMALIZATIONS)]
    for index, variant in enumerate(VARIANTS)
}
JSON_KEYS = {"file", "model", "digit", "confidence", "top3", "rejected"}


def write_checkpoints(directory: Path) -> Path:
    """Untrained but valid checkpoints of every variant, each with its own normalisation."""
    for seed, variant in enumerate(VARIANTS):
        torch.manual_seed(seed)
        model = build_model(variant).eval()
        metadata = {
            "params": sum(p.numel() for p in model.parameters()),
            "normalization": NORMALIZATIONS[variant],
            "test_accuracy": 0.1,
            "per_class": [],
            "history": [],
            "training": {"seed": seed},
        }
        save_checkpoint(model, variant, metadata, directory)
    return directory


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def predictor(checkpoint_dir: Path) -> Predictor:
    return Predictor(directory=checkpoint_dir)


@pytest.fixture(scope="module")
def seven() -> np.ndarray:
    return preprocess(canvas_rgba(stroke_mask(7))).image


def png_file(path: Path, ink: np.ndarray) -> Path:
    Image.fromarray(np.rint((1 - ink) * 255).astype(np.uint8)).save(path, "PNG")
    return path


# --------------------------------------------------------------------------- Predictor


def test_each_model_is_loaded_once(checkpoint_dir: Path, monkeypatch, seven) -> None:
    calls: list[str] = []
    real = predict_module.load_model

    def counting(variant, directory):
        calls.append(variant)
        return real(variant, directory)

    monkeypatch.setattr(predict_module, "load_model", counting)
    loaded = Predictor(directory=checkpoint_dir)
    for _ in range(3):
        loaded.predict(seven)
    loaded.predict_batch(np.stack([seven, seven]), "cnn2")
    assert calls == list(VARIANTS)
    assert set(loaded.models) == set(loaded.metadata) == set(VARIANTS)
    assert all(not model.training for model in loaded.models.values())


def test_each_model_gets_its_own_normalisation(predictor: Predictor, seven) -> None:
    predictions = predictor.predict(seven)
    assert list(predictions) == list(VARIANTS)
    for variant, prediction in predictions.items():
        norm = NORMALIZATIONS[variant]
        assert predictor.normalization(variant) == norm
        with torch.no_grad():
            logits = predictor.models[variant](to_input(torch.from_numpy(seven)[None, None], norm))
        expected = torch.softmax(logits.double(), 1)[0].numpy()
        np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-6)


def test_a_preprocess_result_and_its_image_predict_the_same(predictor: Predictor) -> None:
    result = preprocess(canvas_rgba(stroke_mask(4)))
    from_result = predictor.predict(result)
    from_image = predictor.predict(result.image)
    from_uint8 = predictor.predict(np.rint(result.image * 255).astype(np.uint8))
    for variant in VARIANTS:
        np.testing.assert_allclose(
            from_result[variant].probabilities, from_image[variant].probabilities
        )
        np.testing.assert_allclose(
            from_result[variant].probabilities, from_uint8[variant].probabilities, atol=1e-2
        )


def test_prediction_fields_are_consistent(predictor: Predictor, seven) -> None:
    for variant, prediction in predictor.predict(seven).items():
        p = prediction.probabilities
        assert prediction.model == variant
        assert p.shape == (10,) and np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
        assert prediction.digit == int(np.argmax(p))
        assert prediction.confidence == pytest.approx(float(p.max()))
        assert len(prediction.top3) == 3
        assert [d for d, _ in prediction.top3] == list(np.argsort(-p, kind="stable")[:3])
        assert [q for _, q in prediction.top3] == sorted(
            (q for _, q in prediction.top3), reverse=True
        )
        assert prediction.top3[0] == (prediction.digit, prediction.confidence)
        assert not prediction.rejected


def test_make_prediction_ties_and_threshold() -> None:
    p = np.array([0.3, 0.3, 0.2, 0.2, 0, 0, 0, 0, 0, 0])
    prediction = make_prediction("cnn1", p, threshold=0.3)
    assert prediction.digit == 0 and prediction.top3 == [(0, 0.3), (1, 0.3), (2, 0.2)]
    assert not prediction.rejected  # equal to the threshold is accepted
    assert make_prediction("cnn1", p, threshold=0.31).rejected
    assert prediction.to_dict() == {
        "model": "cnn1",
        "digit": 0,
        "confidence": 0.3,
        "top3": [[0, 0.3], [1, 0.3], [2, 0.2]],
        "rejected": False,
    }


def test_threshold_marks_rejections(predictor: Predictor, seven) -> None:
    assert not any(p.rejected for p in predictor.predict(seven, threshold=0.0).values())
    assert all(p.rejected for p in predictor.predict(seven, threshold=1.0).values())
    for prediction in predictor.predict(seven, threshold=0.5).values():
        assert prediction.rejected == (prediction.confidence < 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="between 0 and 1"):
            predictor.predict(seven, threshold=bad)


def test_blank_input_is_never_predicted(predictor: Predictor) -> None:
    for blank in (preprocess(None), preprocess(np.zeros((280, 280, 4), np.uint8))):
        with pytest.raises(InvalidImageError, match="blank"):
            predictor.predict(blank)
    with pytest.raises(InvalidImageError, match="blank"):
        predictor.predict(np.zeros((28, 28), np.float32))


def test_prediction_waits_while_the_model_is_being_explained(predictor: Predictor, seven) -> None:
    """Predictor and core.explain share one lock per model, so no forward pass meets Captum hooks."""
    model = predictor.models["cnn1"]
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (predictor.predict(seven), finished.set()))
    with model_lock(model):
        worker.start()
        assert not finished.wait(0.3), "predicted while another thread held the model's lock"
    worker.join(10)
    assert finished.is_set()
    assert explain_module.model_lock is model_lock


def test_predict_a_subset_of_variants(predictor: Predictor, seven) -> None:
    both = predictor.predict(seven)
    subset = predictor.predict(seven, variants=["cnn3", "cnn1"])
    assert list(subset) == ["cnn3", "cnn1"]
    np.testing.assert_allclose(subset["cnn1"].probabilities, both["cnn1"].probabilities)
    with pytest.raises(KeyError, match="cnn9"):
        predictor.predict(seven, variants=["cnn9"])


def test_bad_image_arrays(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="28×28"):
        predictor.predict(np.ones((27, 28), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(np.full((28, 28), np.nan, np.float32))


def test_predict_batch_matches_single_predictions(predictor: Predictor, monkeypatch) -> None:
    images = np.stack(
        [preprocess(canvas_rgba(stroke_mask(d))).image for d in (0, 1, 4, 7)] * 2
    ).astype(np.float32)
    monkeypatch.setattr(predict_module, "BATCH_SIZE", 3)  # chunks of 3, 3 and 2
    for variant in VARIANTS:
        batch = predictor.predict_batch(images, variant)
        assert batch.shape == (8, 10) and batch.dtype == np.float32
        np.testing.assert_allclose(batch.sum(1), 1.0, atol=1e-5)
        raw = predictor.predict_batch(images, variant, calibrated=False)
        for image, row, raw_row in zip(images, batch, raw, strict=True):
            np.testing.assert_allclose(
                row, predictor.predict(image)[variant].probabilities, atol=1e-5
            )
            np.testing.assert_allclose(
                raw_row,
                predictor.predict(image, calibrated=False)[variant].probabilities,
                atol=1e-5,
            )
        np.testing.assert_allclose(
            predictor.predict_batch(torch.from_numpy(images)[:, None], variant), batch, atol=1e-6
        )
        as_uint8 = np.rint(images * 255).astype(np.uint8)
        np.testing.assert_allclose(predictor.predict_batch(as_uint8, variant), batch, atol=2e-2)


def test_predict_batch_edge_cases(predictor: Predictor) -> None:
    assert predictor.predict_batch(np.zeros((0, 28, 28), np.float32), "cnn1").shape == (0, 10)
    with pytest.raises(ValueError, match="28, 28"):
        predictor.predict_batch(np.zeros((2, 28, 27), np.float32), "cnn1")
    only_one = Predictor(["cnn2"], predictor.directory)
    with pytest.raises(KeyError, match="cnn1"):
        only_one.predict_batch(np.zeros((1, 28, 28), np.float32), "cnn1")


def test_missing_or_bad_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        Predictor(directory=tmp_path)
    with pytest.raises(CheckpointError, match="Unknown model"):
        Predictor(["cnn9"], tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        Predictor([], tmp_path)


# --------------------------------------------------------------------------- files


def test_predict_file_outcomes(predictor: Predictor, tmp_path: Path) -> None:
    good = png_file(tmp_path / "seven.png", stroke_mask(7))
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 10)  # sparse: never really written
    outcomes = list(
        predict_files([good, blank, text, tmp_path / "missing.png", tmp_path, big], predictor, 0.0)
    )
    assert [o.file for o in outcomes] == [
        os.fsdecode(p) for p in (good, blank, text, tmp_path / "missing.png", tmp_path, big)
    ]
    assert outcomes[0].error is None and set(outcomes[0].predictions) == set(VARIANTS)
    assert all(isinstance(p, Prediction) for p in outcomes[0].predictions.values())
    errors = [o.error for o in outcomes[1:]]
    assert "blank" in errors[0]
    assert "not a supported image format" in errors[1]
    assert errors[2] == "No such file."
    assert "directory" in errors[3]
    assert "limit" in errors[4]
    assert all(not o.predictions for o in outcomes[1:])


def test_unreadable_file(predictor: Predictor, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    locked = png_file(tmp_path / "locked.png", stroke_mask(1))
    locked.chmod(0)
    assert "Permission denied" in predict_file(locked, predictor).error


def test_printable_escapes_control_characters_and_undecodable_bytes() -> None:
    assert printable("seven.png") == "seven.png"
    assert printable("été 7.png") == "été 7.png"
    hostile = "a\nb\x1b[31mc\rd\u202ee" + "\udcff"
    shown = printable(hostile)
    assert shown.isprintable()
    assert "\\n" in shown and "\\x1b" in shown and "\\u202e" in shown and "\\udcff" in shown


def test_main_in_process(checkpoint_dir: Path, tmp_path: Path, capsys) -> None:
    good = png_file(tmp_path / "four.png", stroke_mask(4))
    status = predict_module.main(
        ["--checkpoints", str(checkpoint_dir), "--model", "cnn2", "--threshold", "0.99", str(good)]
    )
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert len(out) == 1 and out[0].startswith(f"{good}: cnn2 predicts ")
    assert "REJECTED" in out[0]  # an untrained model is never 99 % sure


# --------------------------------------------------------------------------- CLI (subprocess)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.predict", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=300,
        check=False,
    )


def test_cli_good_files(shipped_checkpoints: Path, tmp_path: Path) -> None:
    seven = png_file(tmp_path / "seven.png", stroke_mask(7))
    one = tmp_path / "one.jpg"
    one.write_bytes(encode(Image.fromarray(paper_photo(stroke_mask(1, width=10))), "JPEG"))
    done = run_cli(str(seven), str(one))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{seven}: cnn3 predicts 7 ")
    assert lines[1].startswith(f"{one}: cnn3 predicts 1 ")
    assert "Traceback" not in done.stderr


def test_cli_json_mix_of_good_and_bad_files(checkpoint_dir: Path, tmp_path: Path) -> None:
    good = png_file(tmp_path / "seven.png", stroke_mask(7))
    hostile = png_file(tmp_path / "bad\x1b[2J\nname.png", stroke_mask(0))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(encode(Image.new("L", (40, 40)), "PNG")[:30])
    blank = tmp_path / "blank.png"
    Image.new("RGBA", (100, 100), (0, 0, 0, 0)).save(blank)
    args = [str(p) for p in (good, corrupt, tmp_path / "missing.png", blank, hostile)]
    done = run_cli("--checkpoints", str(checkpoint_dir), "--model", "all", "--json", *args)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    predictions = [r for r in records if "error" not in r]
    errors = {r["file"]: r["error"] for r in records if "error" in r}
    assert [(r["file"], r["model"]) for r in predictions] == [
        (f, v) for f in (args[0], args[4]) for v in VARIANTS
    ]
    for record in predictions:
        assert set(record) == JSON_KEYS
        assert 0 <= record["digit"] <= 9 and 0 < record["confidence"] <= 1
        assert len(record["top3"]) == 3 and record["top3"][0] == [
            record["digit"],
            record["confidence"],
        ]
        assert record["rejected"] is False
    assert set(errors) == {args[1], args[2], args[3]}
    assert "damaged or truncated" in errors[args[1]]
    assert errors[args[2]] == "No such file."
    assert "blank" in errors[args[3]]
    assert "\x1b" not in done.stdout  # the hostile name is escaped, never sent to the terminal


def test_cli_text_errors_and_bad_arguments(checkpoint_dir: Path, tmp_path: Path) -> None:
    hostile = tmp_path / "evil\x1b[31m.png"
    hostile.write_bytes(b"plain text, not an image")
    done = run_cli("--checkpoints", str(checkpoint_dir), str(hostile))
    assert done.returncode == 1
    assert done.stdout.strip() == (
        f"{tmp_path}/evil\\x1b[31m.png: error: This file is not a supported image format "
        "(or not an image at all). Please upload a PNG, JPEG, BMP, WebP or GIF image."
    )
    missing_models = run_cli("--checkpoints", str(tmp_path / "nowhere"), str(hostile))
    assert missing_models.returncode == 1
    assert "Cannot load the model" in missing_models.stderr and "missing" in missing_models.stderr
    assert "Traceback" not in missing_models.stderr
    bad_threshold = run_cli("--threshold", "1.5", str(hostile))
    assert bad_threshold.returncode == 2
    assert "between 0 and 1" in bad_threshold.stderr and "Traceback" not in bad_threshold.stderr


# --------------------------------------------------------------------------- trained models


RECOVERED = {
    "transparent canvas": lambda: canvas_rgba(stroke_mask(7)),
    "white canvas": lambda: canvas_rgba(stroke_mask(4), transparent=False),
    "small off-centre canvas digit": lambda: canvas_rgba(
        stroke_mask(7, box=(190, 180, 250, 270), width=16)
    ),
    "paper photo, uneven light": lambda: encode(
        Image.fromarray(paper_photo(stroke_mask(4, width=8), gradient=0.5)), "JPEG"
    ),
    "16-bit PNG": lambda: encode(
        Image.fromarray(np.rint((1 - stroke_mask(7)) * 65535).astype(np.uint16)), "PNG"
    ),
    "CMYK JPEG": lambda: encode(
        Image.fromarray(np.rint((1 - stroke_mask(1)) * 255).astype(np.uint8)).convert("CMYK"),
        "JPEG",
    ),
}
EXPECTED = {
    "transparent canvas": 7,
    "white canvas": 4,
    "small off-centre canvas digit": 7,
    "paper photo, uneven light": 4,
    "16-bit PNG": 7,
    "CMYK JPEG": 1,
}


@pytest.fixture(scope="module")
def trained(shipped_checkpoints: Path) -> Predictor:
    return Predictor(directory=shipped_checkpoints)


@pytest.mark.parametrize("name", list(RECOVERED))
def test_trained_models_recover_the_digit(trained: Predictor, name: str) -> None:
    result = preprocess(RECOVERED[name]())
    assert not result.blank
    predictions = trained.predict(result)
    assert {v: p.digit for v, p in predictions.items()} == dict.fromkeys(VARIANTS, EXPECTED[name])
