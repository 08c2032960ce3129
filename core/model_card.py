"""Model cards (``checkpoints/<variant>.md``) generated from a checkpoint's measured metadata.

Metadata is validated by :func:`core.checkpoints.read_metadata` (types and ranges of every field
read here), but older or hand-made checkpoints may lack optional figures: those show as ``?``.
"""

from __future__ import annotations

from typing import Any


def _get(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _fmt(value: Any, spec: str = "") -> str:
    """``value`` formatted by ``spec``, or ``?`` when it is missing."""
    return "?" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.2f}%"


def _description(metadata: dict[str, Any]) -> str:
    """ "A 2-conv-block LeakyReLU CNN", "A logistic regression", "An MLP with 2 hidden layers"."""
    config = metadata.get("config", {})
    if isinstance(config, dict) and "channels" in config:
        return f"A {len(config['channels'])}-conv-block LeakyReLU CNN"
    hidden = config.get("hidden", []) if isinstance(config, dict) else []
    if not hidden:
        return "A logistic regression (one linear layer on the 784 pixels)"
    return f"An MLP with {len(hidden)} hidden LeakyReLU layers ({', '.join(map(str, hidden))})"


def _outlier_lines(training: dict[str, Any]) -> list[str]:
    """How outlier exposure was used, when it was."""
    pool, config = training.get("outlier_pool"), training.get("config", {})
    if not isinstance(pool, dict) or not config.get("outlier_weight"):
        return []
    return [
        f"- Outlier exposure: {_fmt(pool.get('size'), ',')} non-digit images built in code "
        "(`core.outliers`: fonts, stroke letters, shapes, curves, silhouettes, textures, "
        f"overlaid digit pairs), {_fmt(config.get('outlier_fraction'))} per digit in every "
        f"batch, their cross-entropy to uniform weighted {_fmt(config.get('outlier_weight'))}."
    ]


def _augmentation_line(config: dict[str, Any]) -> str:
    """What the recorded augmentation did, from the training config (older configs lack fields)."""
    augmentation = config.get("augmentation", {})
    if not config.get("augment", True):
        return "- No augmentation."
    parts = "rotation, shear, scale, shift and stroke thinning/thickening"
    probs = augmentation.get("stroke_probs", []) if isinstance(augmentation, dict) else []
    if len(probs) > 3 and probs[3] > 0:
        parts += f", loops closed as a thick canvas brush closes them ({probs[3]:.0%} of samples)"
    return f"- Per-sample augmentation: {parts}."


def _ood_lines(ood: dict[str, Any]) -> list[str]:
    """AUROC and rejected share per out-of-distribution set, at the 95%-coverage threshold."""
    sets = ood.get("sets", {})
    if not sets:
        return []
    lines = [
        "",
        "## Out-of-distribution detection",
        "",
        "How well the maximum softmax probability (MSP) and the energy score separate the MNIST "
        "test digits from each set (AUROC, 1 = perfectly, 0.5 = not at all), and the share of the "
        "set rejected at the MSP threshold that keeps 95% of MNIST test digits "
        f"({_fmt(_get(ood, 'thresholds', 'msp', '0.95'), '.3f')}).",
        "",
        "| set | images | AUROC (MSP) | AUROC (energy) | rejected at 95% coverage |",
        "|---|---|---|---|---|",
    ]
    for name, entry in sets.items():
        lines.append(
            f"| {entry.get('label', name)} | {_fmt(entry.get('n'), ',')} | "
            f"{_fmt(entry.get('auroc_msp'), '.3f')} | {_fmt(entry.get('auroc_energy'), '.3f')} | "
            f"{_pct(_get(entry, 'rejection_msp', '0.95'))} |"
        )
    return lines


def _rejection_lines(metadata: dict[str, Any]) -> list[str]:
    """What the default operating point keeps and turns away, per set."""
    rejection = metadata.get("rejection")
    at = _get(rejection, "at_default")
    if not isinstance(at, dict):
        return []
    labels = {name: _get(metadata, "ood", "sets", name, "label") or name for name in at["sets"]}
    test, canvas = at.get("mnist_test") or {}, at.get("canvas_digits") or {}
    lines = [
        "",
        '## Rejection: "not a digit, or too unsure"',
        "",
        f"Probabilities are calibrated (temperature {_fmt(rejection.get('temperature'), '.3f')}). "
        "The default operating point keeps "
        f"{_pct(rejection.get('default_keep'))} of the validation digits: it rejects a "
        "prediction whose calibrated confidence is below "
        f"{_fmt(rejection.get('threshold'), '.6f')}.",
        "",
        "| input | images | kept | rejected | accuracy of the kept |",
        "|---|---|---|---|---|",
        f"| MNIST test digits | {_fmt(test.get('n'), ',')} | {_pct(test.get('kept'))} | "
        f"{_pct(None if test.get('kept') is None else 1 - test['kept'])} | "
        f"{_pct(test.get('accuracy_kept'))} |",
    ]
    if canvas:
        lines.append(
            f"| canvas-drawn test digits | {_fmt(canvas.get('n'), ',')} | "
            f"{_pct(canvas.get('kept'))} | {_pct(1 - canvas['kept'])} | "
            f"{_pct(canvas.get('accuracy_kept'))} |"
        )
    for name, rejected in at["sets"].items():
        lines.append(f"| {labels[name]} | | {_pct(1 - rejected)} | {_pct(rejected)} | |")
    return lines


def render_model_card(metadata: dict[str, Any]) -> str:
    """Markdown card: architecture, hyper-parameters, measured accuracy, intended use, limitations."""
    variant = metadata["variant"]
    training = metadata["training"]
    tested = sum(row["support"] for row in metadata["per_class"]) or None
    lines = [
        f"# Model card: `{variant}`",
        "",
        f"{_description(metadata)} for 28×28 MNIST-style digits, part of digit-lens. Every figure below was measured by "
        "`scripts/train_all.py` / `scripts/evaluate_all.py` and is read from the checkpoint "
        "metadata.",
        "",
        f"## Results ({_fmt(tested, ',')} MNIST test images)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {_pct(metadata['test_accuracy'])} |",
        f"| test errors | {metadata.get('test_errors', '?')} of {_fmt(tested, ',')} |",
        f"| validation accuracy (best epoch) | {_pct(training.get('best_val_accuracy'))} |",
    ]
    if "test_ece" in metadata:
        lines.append(f"| expected calibration error (15 bins) | {metadata['test_ece']:.4f} |")
    if "temperature" in metadata:
        lines.append(f"| fitted temperature | {metadata['temperature']:.3f} |")
        lines.append(
            f"| ECE after temperature scaling | {_fmt(metadata.get('test_ece_scaled'), '.4f')} |"
        )
    lines += [
        f"| parameters | {metadata['params']:,} |",
        "",
        "## Architecture",
        "",
        "| layer | type | output shape | parameters |",
        "|---|---|---|---|",
    ]
    for row in metadata.get("architecture", []):
        shape = "×".join(str(d) for d in row["output_shape"])
        lines.append(f"| `{row['layer']}` | {row['type']} | {shape} | {row['params']:,} |")
    config = training.get("config", {})
    lines += [
        "",
        "## Training",
        "",
        f"- Data: MNIST training set, {_fmt(training.get('train_size'), ',')} images for training "
        f"and {_fmt(training.get('val_size'), ',')} held out (seed {_fmt(config.get('seed'))}) "
        "for early stopping.",
        f"- Normalisation: mean {metadata['normalization']['mean']}, "
        f"std {metadata['normalization']['std']}.",
        f"- AdamW (weight decay {_fmt(config.get('weight_decay'))}), OneCycleLR up to "
        f"{_fmt(config.get('max_lr'))}, batch {_fmt(config.get('batch_size'))}, label smoothing "
        f"{_fmt(config.get('label_smoothing'))}.",
        f"- Epochs run: {_fmt(training.get('epochs_run'))} of {_fmt(config.get('epochs'))} "
        f"(best epoch {_fmt(training.get('best_epoch'))}, patience "
        f"{_fmt(config.get('patience'))}).",
        _augmentation_line(config),
        *_outlier_lines(training),
        f"- Training time: {_fmt(training.get('seconds'), '.0f')} s on "
        f"{_fmt(training.get('device'))} ({_fmt(training.get('threads'))} threads), torch "
        f"{_fmt(training.get('torch'))}.",
        "",
        "## Per-class results",
        "",
        "| digit | precision | recall (accuracy) | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for row in metadata["per_class"]:
        lines.append(
            f"| {row['class']} | {_pct(row['precision'])} | {_pct(row['recall'])} | "
            f"{_pct(row['f1'])} | {row['support']} |"
        )
    lines += _rejection_lines(metadata)
    lines += _ood_lines(metadata.get("ood", {}))
    lines += [
        "",
        "## Intended use",
        "",
        "Teaching and exploring how a small CNN classifies handwritten digits: the digit-lens "
        "dashboard shows its predictions, activations and attributions. Not for reading digits in "
        "documents where errors cost anything (cheques, forms, addresses).",
        "",
        "## Limitations",
        "",
        "- **Out-of-distribution input**: the model was trained to spread its probability over "
        "all ten digits for things that are not digits (outlier exposure), and the operating point "
        "above turns most of them away, but not all: read the rejection table before trusting an "
        "answer, above all for scribbles and letters that look like digits.",
        "- **Canvas domain shift**: MNIST digits are centred pen strokes scanned in 1990s US forms. "
        "Digits drawn on a canvas have thicker strokes, other positions and sizes, and other "
        "writing styles; preprocessing and stroke-width augmentation narrow this gap but do not "
        "remove it.",
        "- Trained on one seed; the numbers above are single-run figures, not averages.",
        "",
    ]
    return "\n".join(lines)
