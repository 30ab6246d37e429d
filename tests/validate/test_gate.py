"""The gate: one check per configured threshold, unmeasured metrics fail, float noise does not."""

from __future__ import annotations

import pytest

from structbert_lite.config import GateConfig
from structbert_lite.validate.gate import evaluate_gate

METRICS = {
    "accuracy_drop": 0.5000000000001,
    "agreement": 0.995,
    "max_abs_logit_diff": 0.02,
    "speedup": 1.8,
    "size_bytes": 100 * 1024 * 1024,
    "peak_rss_mb": 300.0,
}


def test_all_configured_checks_pass():
    gate = GateConfig(max_accuracy_drop=0.5, min_agreement=0.99, max_logit_diff=0.05, min_speedup=1.5,
                      max_size_mb=100, max_peak_rss_mb=400)
    result = evaluate_gate("int8-dynamic", METRICS, gate)
    assert result["passed"]
    assert [c["name"] for c in result["checks"]] == [
        "max_accuracy_drop", "min_agreement", "max_logit_diff", "min_speedup", "max_size_mb", "max_peak_rss_mb"
    ]
    assert all(set(c) >= {"name", "value", "limit", "passed"} for c in result["checks"])
    assert result["checks"][4]["value"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "gate, failing",
    [
        (GateConfig(min_speedup=1000), "min_speedup"),
        (GateConfig(min_agreement=0.999), "min_agreement"),
        (GateConfig(max_accuracy_drop=0.4), "max_accuracy_drop"),
        (GateConfig(max_size_mb=99.9), "max_size_mb"),
        (GateConfig(max_logit_diff=0.01), "max_logit_diff"),
        (GateConfig(max_peak_rss_mb=299), "max_peak_rss_mb"),
    ],
)
def test_failing_check(gate, failing):
    result = evaluate_gate("v", METRICS, gate)
    assert not result["passed"]
    assert [c["name"] for c in result["checks"] if not c["passed"]] == [failing]


def test_unmeasured_metric_fails_with_a_clear_reason():
    result = evaluate_gate("v", {**METRICS, "peak_rss_mb": None}, GateConfig(max_peak_rss_mb=1e6))
    (check,) = result["checks"]
    assert not result["passed"] and check["value"] is None
    assert "peak_rss_mb was not measured" in check["detail"]


@pytest.mark.parametrize("gate", [None, GateConfig()])
def test_no_gate_passes_without_checks(gate):
    assert evaluate_gate("v", METRICS, gate) == {"passed": True, "speed_verified": True, "checks": []}


def test_unverified_speed_is_reported_but_does_not_decide():
    result = evaluate_gate("v", {**METRICS, "speedup": 888.0}, GateConfig(min_speedup=1000, min_agreement=0.99),
                           speed_verified=False)
    speed = result["checks"][0] if result["checks"][0]["name"] == "min_speedup" else result["checks"][1]
    assert result["passed"] and not result["speed_verified"]
    assert speed["verified"] is False and speed["measured_pass"] is False and "not verified" in speed["detail"]


def test_a_child_slower_than_its_parent_fails():
    result = evaluate_gate("fp32-optimized", {**METRICS, "speedup_vs_parent": 0.91},
                           GateConfig(min_speedup_vs_parent=1.0))
    assert not result["passed"] and result["checks"][0]["name"] == "min_speedup_vs_parent"
