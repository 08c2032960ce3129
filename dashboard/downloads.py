"""What a user can take away: the 28×28 input as a PNG and the predictions as JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping

import numpy as np
from PIL import Image

from core.predict import Prediction
from dashboard.state import CurrentInput


def input_png(image: np.ndarray) -> bytes:
    """The 28×28 image the models see (white on black, 8-bit), as PNG bytes."""
    pixels = np.round(np.clip(np.asarray(image, np.float64), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def predictions_json(
    current: CurrentInput, predictions: Mapping[str, Prediction], keep: float
) -> str:
    """Every shown model's answer for the current input, with where the input came from."""
    document = {
        "input": {
            "source": current.source,
            "name": current.name,
            "true_label": current.label,
            "test_index": current.test_index,
        },
        "operating_point": {"keep": keep},
        "predictions": [
            {
                **prediction.to_dict(),
                "threshold": prediction.threshold,
                "calibrated": prediction.calibrated,
                "probabilities": [round(float(p), 6) for p in prediction.probabilities],
                "reason": prediction.reason,
            }
            for prediction in predictions.values()
        ],
    }
    return json.dumps(document, indent=2)
