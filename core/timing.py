"""Wall-clock timing of a call, as every benchmark and the Compare page's live latency use it.

Timings on a shared machine are noisy: report the median (p50) and the 95th percentile of many
calls after a few untimed warm-up calls, never a single measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.locks import model_lock


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: every sample, and its median and 95th percentile."""

    samples_ms: np.ndarray

    @property
    def p50(self) -> float:
        """Median milliseconds per call."""
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p95(self) -> float:
        """95th-percentile milliseconds per call."""
        return float(np.percentile(self.samples_ms, 95))

    def row(self, label: str, target_ms: float | None = None, width: int = 48) -> str:
        """One table line: label, p50, p95 and, with a target, whether p95 meets it."""
        verdict = ""
        if target_ms is not None:
            verdict = "  ok" if self.p95 < target_ms else f"  OVER {target_ms:g} ms"
        return f"  {label:<{width}} p50 {self.p50:8.2f} ms   p95 {self.p95:8.2f} ms{verdict}"


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 10) -> Timing:
    """Time ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    for _ in range(warmup):
        fn()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        samples[i] = (time.perf_counter() - start) * 1000
    return Timing(samples)


def forward_pass_timing(model: torch.nn.Module, x: torch.Tensor, repeats: int = 7) -> Timing:
    """Wall time of ``repeats`` forward passes of ``model`` on ``x`` (one untimed warm-up),
    holding the model's lock so no other session's hooks run meanwhile."""
    with model_lock(model), torch.inference_mode():
        return time_calls(lambda: model(x), repeats, warmup=1)
