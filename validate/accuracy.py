"""Accuracy and drift against the baseline, from logits arrays (pure numpy).

Shapes: ``gold`` (rows,), logits (rows, num_labels). Accuracy drop is in percentage points
(baseline accuracy − variant accuracy) × 100, so 0.5 means half a point worse.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from structbert_lite.errors import EvalDataError

DEFAULT_LABEL_NAMES = ("Negative", "Positive")


def classification_metrics(gold: np.ndarray, logits: np.ndarray,
                           label_names: Sequence[str] = DEFAULT_LABEL_NAMES) -> dict:
    """Accuracy, per-class precision/recall/F1/support and macro F1 of ``logits`` against ``gold``."""
    gold = np.asarray(gold)
    pred = np.asarray(logits).argmax(axis=-1)  # (rows,)
    if gold.shape != pred.shape:
        raise EvalDataError(f"{len(gold)} labels but {len(pred)} predictions")
    per_class = {}
    for label_id, name in enumerate(label_names):
        tp = int(((pred == label_id) & (gold == label_id)).sum())
        predicted = int((pred == label_id).sum())
        support = int((gold == label_id).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "accuracy": float((pred == gold).mean()) if len(gold) else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
    }


def drift_metrics(
    gold: np.ndarray,
    baseline_logits: np.ndarray,
    variant_logits: np.ndarray,
    texts: Sequence[str],
    max_flipped: int = 20,
    label_names: Sequence[str] = DEFAULT_LABEL_NAMES,
) -> dict:
    """How far a variant moved from the baseline: accuracy drop, agreement, logit diffs, flipped texts."""
    baseline_logits = np.asarray(baseline_logits, dtype=np.float64)
    variant_logits = np.asarray(variant_logits, dtype=np.float64)
    if baseline_logits.shape != variant_logits.shape:
        raise EvalDataError(f"logit shapes differ: baseline {baseline_logits.shape}, variant {variant_logits.shape}")
    gold = np.asarray(gold)
    base_pred = baseline_logits.argmax(axis=-1)  # (rows,)
    var_pred = variant_logits.argmax(axis=-1)  # (rows,)
    diff = np.abs(baseline_logits - variant_logits)  # (rows, num_labels)
    flipped_idx = np.flatnonzero(base_pred != var_pred)
    flipped = [
        {
            "text": texts[i],
            "gold": label_names[int(gold[i])],
            "baseline": label_names[int(base_pred[i])],
            "variant": label_names[int(var_pred[i])],
        }
        for i in flipped_idx[:max_flipped]
    ]
    base_acc = float((base_pred == gold).mean()) if len(gold) else 0.0
    var_acc = float((var_pred == gold).mean()) if len(gold) else 0.0
    return {
        "accuracy_drop": (base_acc - var_acc) * 100.0,  # points
        "agreement": float((base_pred == var_pred).mean()) if len(gold) else 0.0,
        "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "flipped_count": int(len(flipped_idx)),
        "flipped": flipped,
    }


def variant_accuracy(
    gold: np.ndarray,
    baseline_logits: np.ndarray,
    variant_logits: np.ndarray,
    texts: Sequence[str],
    max_flipped: int = 20,
    label_names: Sequence[str] = DEFAULT_LABEL_NAMES,
) -> dict[str, Any]:
    """Classification metrics of the variant merged with its drift against the baseline."""
    return {
        **classification_metrics(gold, variant_logits, label_names),
        **drift_metrics(gold, baseline_logits, variant_logits, texts, max_flipped, label_names),
    }
