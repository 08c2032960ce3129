"""Tables the pages show: per-model metrics, OOD detection, rejection per set.

Rows are built from the checkpoint metadata and from ``core``'s scores; the column settings that
go with them sit beside each builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

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
