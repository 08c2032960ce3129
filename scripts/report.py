"""Print the README's result tables (Markdown) from the shipped checkpoints and precomputed files.

Every figure is read from ``checkpoints/``: the metadata written by ``train_all.py`` /
``evaluate_all.py``, the evaluation files' stored logits (the canvas-drawn digits' calibration
error is computed from them) and the JSON files of ``robustness.py`` and ``faithfulness.py``. No
model is run, so the tables always match what the dashboard shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.checkpoints import DEFAULT_DIRECTORY, CheckpointError, read_metadata
from core.evalfile import EvalFile, read_eval_file
from core.evaluate import expected_calibration_error, softmax
from core.faithfulness import BASELINE_MAPS, faithfulness_score
from core.methods import METHODS
from core.models import REGISTRY
from core.ood import OOD_LABELS

TARGETS = {"cnn1": 0.992, "cnn2": 0.995, "cnn3": 0.996, "logreg": 0.92, "mlp": 0.985}


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def canvas_ece(evaluation: EvalFile, temperature: float) -> float | None:
    """Calibrated ECE on the canvas-drawn test digits, from their stored logits."""
    if evaluation.canvas_logits is None or evaluation.canvas_labels is None:
        return None
    probabilities = softmax(evaluation.canvas_logits.astype("float64"), temperature)
    return expected_calibration_error(probabilities, evaluation.canvas_labels)


def models_table(metas: dict[str, dict], evaluations: dict[str, EvalFile]) -> list[str]:
    lines = [
        "| model | params | epochs | test accuracy (target) | ECE raw → calibrated (T) "
        "| canvas-drawn ECE, calibrated | training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, meta in metas.items():
        training = meta["training"]
        canvas = canvas_ece(evaluations[variant], meta["temperature"])
        lines.append(
            f"| `{variant}` | {meta['params']:,} | {training['epochs_run']} | "
            f"**{pct(meta['test_accuracy'])}** ({meta.get('test_errors', '?')} errors; ≥ "
            f"{pct(TARGETS.get(variant), 1)}) | {meta['test_ece']:.4f} → "
            f"{meta['test_ece_scaled']:.4f} (T = {meta['temperature']:.2f}) | "
            f"{'–' if canvas is None else f'{canvas:.4f}'} | {training['seconds']:.0f} s |"
        )
    return lines


def rejection_table(metas: dict[str, dict]) -> list[str]:
    sets = list(next(iter(metas.values()))["rejection"]["at_default"]["sets"])
    header = ["model", "MNIST kept", "accuracy of kept", "canvas digits kept"]
    header += [OOD_LABELS.get(name, name) for name in sets]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, meta in metas.items():
        at = meta["rejection"]["at_default"]
        canvas = at.get("canvas_digits") or {}
        cells = [
            f"`{variant}`",
            pct(at["mnist_test"]["kept"]),
            pct(at["mnist_test"]["accuracy_kept"]),
            pct(canvas.get("kept"), 1),
            *(pct(at["sets"][name], 1) for name in sets),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def auroc_table(metas: dict[str, dict]) -> list[str]:
    sets = list(next(iter(metas.values()))["ood"]["sets"])
    lines = [
        "| model | " + " | ".join(OOD_LABELS.get(n, n) for n in sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for variant, meta in metas.items():
        entry = meta["ood"]["sets"]
        lines.append(
            f"| `{variant}` | "
            + " | ".join(f"{100 * entry[n]['auroc_msp']:.1f}" for n in sets)
            + " |"
        )
    return lines


def robustness_table(table: dict) -> list[str]:
    lines = [
        "| model | clean | shift 2 px | 4 px | 6 px | rotate 15° | 30° | canvas-drawn |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, curve in table["models"].items():
        s, r = curve["shift"], curve["rotation"]
        lines.append(
            f"| `{variant}` | {pct(s['0'])} | {pct(s['2'])} | {pct(s['4'])} | {pct(s['6'])} | "
            f"{pct(r['15'])} | {pct(r['30'])} | {pct(curve.get('canvas'))} |"
        )
    return lines


def faithfulness_table(table: dict) -> list[str]:
    lines = [
        "| model | method (layer) | deletion ↓ | insertion ↑ | ROAD ↑ | randomisation ρ | sanity |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, entry in table["models"].items():
        ranked = sorted(entry["methods"].items(), key=lambda kv: -faithfulness_score(kv[1]))
        for name, scores in ranked:
            rho = scores.get("randomisation_rho")
            verdict = "–" if rho is None else ("pass" if scores["sanity_passed"] else "**fail**")
            lines.append(
                f"| `{variant}` | {name.replace('@features.', ' @ ').replace('.conv', '')} | "
                f"{scores['deletion_auc']:.3f} | {scores['insertion_auc']:.3f} | "
                f"{scores['road']:.3f} | {'–' if rho is None else f'{rho:+.2f}'} | {verdict} |"
            )
    return lines


def _method_label(key: str) -> str:
    """``gradcam@features.block1.conv`` -> ``Grad-CAM (block1)``."""
    name, _, layer = key.partition("@")
    label = METHODS[name].label if name in METHODS else name
    return f"{label} ({layer.split('.')[1]})" if layer else label


def faithfulness_summary(table: dict) -> list[str]:
    """Per model: the most faithful map, the most faithful that passes the sanity check, the two
    baselines' scores and the methods that fail the check (the README's summary)."""
    lines = [
        "| model | most faithful overall (score) | most faithful that passes the sanity check "
        "(score) | edge map | random map | fail the sanity check (ρ ≥ 0.5) |",
        "|---|---|---|---|---|---|",
    ]
    for variant, entry in table["models"].items():
        methods = {k: v for k, v in entry["methods"].items() if k not in BASELINE_MAPS}
        ranked = sorted(methods.items(), key=lambda kv: -faithfulness_score(kv[1]))
        passing = [(k, v) for k, v in ranked if v.get("sanity_passed", True)]
        failing = [_method_label(k) for k, v in ranked if not v.get("sanity_passed", True)]
        best = f"{_method_label(ranked[0][0])} ({faithfulness_score(ranked[0][1]):+.3f})"
        best_passing = (
            f"{_method_label(passing[0][0])} ({faithfulness_score(passing[0][1]):+.3f})"
            if passing
            else "–"
        )
        baselines = [f"{faithfulness_score(entry['methods'][k]):+.3f}" for k in ("edges", "random")]
        lines.append(
            f"| `{variant}` | {best} | {best_passing} | {baselines[0]} | {baselines[1]} | "
            f"{', '.join(failing) or '–'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print every table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=DEFAULT_DIRECTORY)
    args = parser.parse_args(argv)
    try:
        metas = {v: read_metadata(v, args.checkpoints) for v in REGISTRY}
        evaluations = {v: read_eval_file(v, args.checkpoints) for v in REGISTRY}
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(["### Models", "", *models_table(metas, evaluations), ""]))
    print(
        "\n".join(["### Rejection at the default operating point", "", *rejection_table(metas), ""])
    )
    print("\n".join(["### OOD AUROC (calibrated MSP, %)", "", *auroc_table(metas), ""]))
    for name, render in (
        ("robustness.json", robustness_table),
        ("faithfulness.json", faithfulness_summary),
        ("faithfulness.json", faithfulness_table),
    ):
        path = args.checkpoints / name
        if path.exists():
            print("\n".join([f"### {name}", "", *render(json.loads(path.read_text())), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
