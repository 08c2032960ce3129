"""Tables the pages show: per-model metrics, OOD detection, rejection per set, faithfulness.

Rows are built from the checkpoint metadata and from ``core``'s scores; the column settings that
go with them sit beside each builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from core.faithfulness import BASELINE_MAPS, Faithfulness, faithfulness_score
from core.methods import METHODS
from core.ood import OOD_LABELS, OOD_SETS, SetScores, rejection_rate
from dashboard import loaders, results

OOD_COLUMNS = {
    "rejected": st.column_config.ProgressColumn(
        "rejected at this threshold", format="percent", min_value=0.0, max_value=1.0
    ),
    "AUROC (MSP)": st.column_config.NumberColumn(format="%.4f"),
    "AUROC (energy)": st.column_config.NumberColumn(format="%.4f"),
}
METRICS_COLUMNS = {
    "parameters": st.column_config.NumberColumn(format="localized"),
    "test accuracy": st.column_config.NumberColumn(format="percent"),
    "ECE": st.column_config.NumberColumn(format="%.4f", help="Expected calibration error"),
    "ECE after temperature scaling": st.column_config.NumberColumn(format="%.4f"),
    "temperature": st.column_config.NumberColumn(format="%.3f"),
}
AUROC_COLUMNS = {
    OOD_LABELS[name]: st.column_config.NumberColumn(format="%.4f") for name in OOD_SETS
}


def ood_table(ood: Mapping[str, SetScores], threshold: float) -> list[dict[str, Any]]:
    """Rows: each OOD set's share rejected at ``threshold`` and its AUROCs."""
    return [
        {
            "input": OOD_LABELS.get(name, name),
            "images": len(entry.prediction),
            "rejected": rejection_rate(entry.scores["msp"], threshold),
            "AUROC (MSP)": entry.auroc["msp"],
            "AUROC (energy)": entry.auroc["energy"],
        }
        for name, entry in ood.items()
    ]


def metrics_row(variant: str) -> dict[str, Any]:
    """Params, accuracy and calibration of one model, for comparison tables."""
    meta = loaders.model_and_metadata(variant)[1]
    row: dict[str, Any] = {
        "model": variant,
        "parameters": meta["params"],
        "test accuracy": meta["test_accuracy"],
        "test errors": meta.get("test_errors"),
        "ECE": meta.get("test_ece"),
    }
    if "test_ece_scaled" in meta:
        row["ECE after temperature scaling"] = meta["test_ece_scaled"]
        row["temperature"] = meta.get("temperature")
    return row


def auroc_row(variant: str) -> dict[str, Any]:
    """AUROC of the maximum softmax probability against each out-of-distribution set."""
    return {"model": variant} | {
        OOD_LABELS.get(name, name): entry.auroc["msp"]
        for name, entry in results.ood_scores(variant).items()
    }


FAITHFULNESS_COLUMNS = {
    "deletion AUC": st.column_config.NumberColumn(format="%.3f", help="lower = more faithful"),
    "insertion AUC": st.column_config.NumberColumn(format="%.3f", help="higher = more faithful"),
    "ROAD": st.column_config.NumberColumn(format="%.3f", help="higher = more faithful"),
    "score": st.column_config.NumberColumn(
        format="%+.3f", help="insertion AUC - deletion AUC (higher = more faithful)"
    ),
    "randomisation ρ": st.column_config.NumberColumn(format="%+.2f"),
}


def _method_label(name: str) -> str:
    """``gradcam@features.block3.conv`` → ``Grad-CAM (block3)``; baselines keep their label."""
    key, _, layer = name.partition("@")
    if key in BASELINE_MAPS:
        return BASELINE_MAPS[key]
    label = METHODS[key].label if key in METHODS else key
    return f"{label} ({layer.removeprefix('features.').removesuffix('.conv')})" if layer else label


def faithfulness_rows(scores: Mapping[str, Faithfulness]) -> list[dict[str, Any]]:
    """One row per map on the current digit, most faithful first."""
    rows = [
        {
            "map": name,
            "score": s.insertion_auc - s.deletion_auc,
            "deletion AUC": s.deletion_auc,
            "insertion AUC": s.insertion_auc,
            **({"ROAD": s.road} if s.road is not None else {}),
        }
        for name, s in scores.items()
    ]
    return sorted(rows, key=lambda row: -row["score"])


def test_set_faithfulness_rows(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per method (and layer) over the test-set subset, most faithful first."""
    rows = []
    for name, scores in entry["methods"].items():
        rho = scores.get("randomisation_rho")
        rows.append(
            {
                "map": _method_label(name),
                "score": faithfulness_score(scores),
                "deletion AUC": scores["deletion_auc"],
                "insertion AUC": scores["insertion_auc"],
                "ROAD": scores["road"],
                "randomisation ρ": rho,
                "sanity check": "—"
                if rho is None
                else ("pass" if scores["sanity_passed"] else "FAIL"),
            }
        )
    return sorted(rows, key=lambda row: -row["score"])


def sanity_verdicts(
    entry: Mapping[str, Any] | None, methods: Mapping[str, Any], layer: str | None
) -> dict[str, str]:
    """A ✓/✗ badge per method from the test-set sanity check (at ``layer`` for CAM methods)."""
    if not entry:
        return {}
    badges = {}
    for key, method in methods.items():
        scores = entry["methods"].get(f"{key}@{layer}" if method.needs_layer else key)
        if scores and "sanity_passed" in scores:
            badges[key] = "✓ sanity" if scores["sanity_passed"] else "✗ fails sanity"
    return badges


ROBUSTNESS_COLUMNS = {
    column: st.column_config.NumberColumn(format="percent")
    for column in ("clean", "shift 2 px", "shift 4 px", "shift 6 px", "rotate 15°", "rotate 30°",
                   "canvas-drawn")
}  # fmt: skip


def robustness_rows(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Accuracy per model: clean, shifted, rotated and canvas-drawn test digits."""
    return [
        {
            "model": variant,
            "clean": curve["shift"]["0"],
            "shift 2 px": curve["shift"]["2"],
            "shift 4 px": curve["shift"]["4"],
            "shift 6 px": curve["shift"]["6"],
            "rotate 15°": curve["rotation"]["15"],
            "rotate 30°": curve["rotation"]["30"],
            "canvas-drawn": curve.get("canvas"),
        }
        for variant, curve in table["models"].items()
    ]
