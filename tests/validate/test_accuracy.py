"""Accuracy and drift metrics on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from structbert_lite.validate.accuracy import classification_metrics, drift_metrics, variant_accuracy


def logits_for(preds):
    return np.array([[1.0, 0.0] if p == 0 else [0.0, 1.0] for p in preds], dtype=np.float32)


def test_classification_metrics():
    gold = np.array([1, 1, 0, 0])
    m = classification_metrics(gold, logits_for([1, 0, 0, 0]))
    assert m["accuracy"] == 0.75
    assert m["per_class"]["Positive"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["Negative"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["Negative"]["recall"] == 1.0


def test_drift_metrics():
    gold = np.array([1, 1, 0, 0])
    base = logits_for([1, 1, 0, 1])  # accuracy 0.75
    var = logits_for([1, 0, 0, 0])  # accuracy 0.75, two flips
    var[0, 1] = 1.5
    d = drift_metrics(gold, base, var, ["a", "b", "c", "d"], max_flipped=1)
    assert d["accuracy_drop"] == pytest.approx(0.0)
    assert d["agreement"] == 0.5
    assert d["max_abs_logit_diff"] == pytest.approx(1.0)
    assert d["flipped_count"] == 2
    assert d["flipped"] == [{"text": "b", "gold": "Positive", "baseline": "Positive", "variant": "Negative"}]


def test_accuracy_drop_is_in_points():
    gold = np.array([1] * 200)
    base = logits_for([1] * 200)
    var = logits_for([1] * 199 + [0])
    assert variant_accuracy(gold, base, var, ["t"] * 200)["accuracy_drop"] == pytest.approx(0.5)
