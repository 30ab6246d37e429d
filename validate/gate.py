"""The publishing gate: per-variant thresholds from the config, one check per configured threshold.

A check whose metric was not measured (None or NaN) fails: a gate we cannot evaluate must not pass. Speed
checks are the exception when the measurement itself could not be trusted (a busy machine, see
`validate.speed`): they are marked ``verified: false`` and do not decide the verdict, and the run says
"published, speed not verified" instead of publishing an absurd ratio as a pass.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional

from structbert_lite.config import GateConfig
from structbert_lite.constants import MB

logger = logging.getLogger(__name__)

# Float noise (e.g. 0.5000000000001 points) must not fail a check that is met exactly.
TOLERANCE = 1e-9

# gate key -> (metric key, how to turn the metric into the gate's unit, "max"/"min")
CHECKS: dict[str, tuple[str, Any, str]] = {
    "max_accuracy_drop": ("accuracy_drop", lambda v: v, "max"),
    "min_agreement": ("agreement", lambda v: v, "min"),
    "max_logit_diff": ("max_abs_logit_diff", lambda v: v, "max"),
    "min_speedup": ("speedup", lambda v: v, "min"),
    "min_speedup_vs_parent": ("speedup_vs_parent", lambda v: v, "min"),
    "max_size_mb": ("size_bytes", lambda v: v / MB, "max"),
    "max_peak_rss_mb": ("peak_rss_mb", lambda v: v, "max"),
}
SPEED_CHECKS = ("min_speedup", "min_speedup_vs_parent")


def _check(key: str, metrics: Mapping[str, Any], limit: float, speed_verified: bool) -> dict[str, Any]:
    metric, convert, kind = CHECKS[key]
    raw = metrics.get(metric)
    check: dict[str, Any] = {"name": key, "metric": metric, "limit": limit}
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return {**check, "value": None, "passed": False, "detail": f"{metric} was not measured, so {key} cannot pass"}
    value = float(convert(raw))
    ok = value <= limit + TOLERANCE if kind == "max" else value >= limit - TOLERANCE
    check.update(value=value, passed=bool(ok))
    if key in SPEED_CHECKS and not speed_verified:
        check.update(passed=True, verified=False, measured_pass=bool(ok),
                     detail="not verified: the machine was busy while speed was measured")
    return check


def evaluate_gate(
    variant_name: str, metrics: Mapping[str, Any], gate: Optional[GateConfig], speed_verified: bool = True
) -> dict[str, Any]:
    """``{"passed", "speed_verified", "checks": [{name, value, limit, passed, metric[, verified, detail]}]}``.

    Only thresholds set in ``gate`` are checked; no gate (or an empty one) passes with no checks, logged.
    """
    if gate is None or all(getattr(gate, key) is None for key in CHECKS):
        logger.warning("no gate configured for %s: it is published without checks", variant_name)
        return {"passed": True, "speed_verified": speed_verified, "checks": []}
    checks = [_check(key, metrics, getattr(gate, key), speed_verified)
              for key in CHECKS if getattr(gate, key) is not None]
    for check in checks:
        if not check["passed"]:
            logger.info("gate %s: %s failed (value %s, limit %s)",
                        variant_name, check["name"], check["value"], check["limit"])
    return {"passed": all(c["passed"] for c in checks), "speed_verified": speed_verified, "checks": checks}


def failed_step_gate(reason: str) -> dict[str, Any]:
    """The gate record of a variant whose step failed: nothing to measure, not published."""
    return {"passed": False, "speed_verified": True,
            "checks": [{"name": "step", "metric": None, "value": None, "limit": None, "passed": False,
                        "detail": reason}]}
