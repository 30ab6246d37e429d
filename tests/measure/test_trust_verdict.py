"""The trust verdict on recorded numbers: the issue's absurd ones are refused, an idle run's are verified."""

from __future__ import annotations

import types

import pytest

from structbert_lite.measure.plan import MeasurePlan
from structbert_lite.measure.trust import TrustLimits, assess, excess_load_per_core, implausible_grid

LIMITS = TrustLimits()


def _point(p50: float, p95: float | None = None, rounds: tuple = ()) -> dict:
    return {"p50": p50, "p95": p95 or p50 * 1.1, "p99": (p95 or p50 * 1.1) * 1.05,
            "rounds_p50": list(rounds or (p50, p50))}


def _measured(contenders: dict, load: float = 1.9, wait: float = 0.01, steal: float = 0.0, threads: int = 2):
    entries = {
        name: {"latency": grid, "contention": {"run_queue_wait_share": wait, "steal_share": steal},
               "load_average_after": [[load, load, load]] * 2}
        for name, grid in contenders.items()
    }
    return types.SimpleNamespace(plan=MeasurePlan(threads=threads), contenders=entries,
                                 load_before=[[load, load, load]])


# Recorded on an idle 2-core AMD EPYC (StructBERT-base shape, 2 threads), README "Benchmark" figures.
IDLE = {
    "pytorch-fp32": {"1x32": _point(73.0, 78.0, (72.1, 74.0)), "1x128": _point(182.0), "8x32": _point(320.0)},
    "int8-dynamic": {"1x32": _point(12.5, 13.4, (12.4, 12.9)), "1x128": _point(42.5), "8x32": _point(60.0)},
}
# The issue's run on a shared machine: PyTorch at 1x32 took 172 ms while its 8x32 took 2 ms; the gate then
# published int8 speedups of hundreds.
ABSURD = {
    "pytorch-fp32": {"1x32": _point(172.0, 410.0, (172.0, 35.0)), "1x128": _point(80.0), "8x32": _point(2.0)},
    "int8-dynamic": {"1x32": _point(0.42, 0.5), "1x128": _point(0.9), "8x32": _point(1.3)},
}


def test_an_idle_run_is_verified():
    verdict = assess(_measured(IDLE), "pytorch-fp32", "1x32", LIMITS, cpus=2)
    assert verdict["verified"] and verdict["reasons"] == []
    assert verdict["baseline_p95_over_p50"] == pytest.approx(78 / 73)
    assert verdict["rounds_spread"]["pytorch-fp32"] == pytest.approx(74.0 / 72.1)


def test_the_issues_absurd_numbers_are_not_verified_and_say_why():
    verdict = assess(_measured(ABSURD, load=4.6, wait=0.45), "pytorch-fp32", "1x32", LIMITS, cpus=2)
    assert verdict["verified"] is False
    text = "\n".join(verdict["reasons"])
    assert "pytorch-fp32: 8×32 took 2.00 ms but 1×32 took 172.00 ms" in text  # more work, 86x faster
    assert "pytorch-fp32: 1×128 took 80.00 ms but 1×32 took 172.00 ms" in text
    assert "p95 / p50 at 1x32 is 2.38" in text
    assert "rounds disagree at 1x32" in text
    assert "2 of 2 contenders (worst: pytorch-fp32): threads waited for a core up to 45%" in text
    assert "1-minute load average 4.60 on 2 CPUs" in text


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(wait=0.2), "waited for a core up to 20%"),
        (dict(steal=0.3), "hypervisor took 30%"),
        (dict(load=3.6), "load average 3.60"),
    ],
)
def test_each_machine_sign_alone_withdraws_verification(change, expected):
    verdict = assess(_measured(IDLE, **change), "pytorch-fp32", "1x32", LIMITS, cpus=2)
    assert not verdict["verified"] and any(expected in r for r in verdict["reasons"]), verdict["reasons"]


def test_a_failed_baseline_is_not_verified():
    measured = _measured({"int8-dynamic": IDLE["int8-dynamic"]})
    measured.contenders["pytorch-fp32"] = {"error": "round 1: worker exited with 1"}
    verdict = assess(measured, "pytorch-fp32", "1x32", LIMITS, cpus=2)
    assert not verdict["verified"]
    assert "was not measured at 1x32: round 1: worker exited with 1" in verdict["reasons"][0]


def test_grid_plausibility_allows_overhead_bound_tiny_models():
    # a tiny model: every shape costs about the same (call overhead), batching never looks 2x cheaper in total
    tiny = {"1x16": _point(0.20), "1x32": _point(0.21), "8x32": _point(0.19), "1x128": _point(0.24)}
    assert implausible_grid("tiny", tiny, 0.5) == []


def test_load_our_own_worker_explains_is_not_excess():
    assert excess_load_per_core([2.1, 1.9, 2.0], threads=2, cpus=2) == 0.0
    assert excess_load_per_core([5.0, 5.0], threads=2, cpus=2) == pytest.approx(1.5)
    assert excess_load_per_core([], threads=2, cpus=2) is None


def test_limits_come_from_a_trust_section_or_the_validate_section():
    section = types.SimpleNamespace(max_round_spread=1.2, backoff_s=None)
    limits = TrustLimits.from_config(types.SimpleNamespace(max_attempts=5, trust=section))
    assert limits.max_attempts == 5 and limits.max_round_spread == 1.2 and limits.backoff_s == TrustLimits().backoff_s
    flat = TrustLimits.from_config(types.SimpleNamespace(max_attempts=2, threads=2))
    assert flat.max_attempts == 2 and flat.max_round_spread == TrustLimits().max_round_spread
