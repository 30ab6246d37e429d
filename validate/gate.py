"""The publishing gate: per-variant thresholds from the config, one check per configured threshold.

A check whose metric was not measured (None or NaN) fails: a gate we cannot evaluate must not pass.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional

from structbert_lite.config import GateConfig

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# Float noise (e.g. 0.5000000000001 points) must not fail a check that is met exactly.
TOLERANCE = 1e-9

# gate key -> (metric key, how to turn the metric into the gate's unit, "max"/"min")
CHECKS: dict[str, tuple[str, Any, str]] = {
    "max_accuracy_drop": ("accuracy_drop", lambda v: v, "max"),
    "min_agreement": ("agreement", lambda v: v, "min"),
    "max_logit_diff": ("max_abs_logit_diff", lambda v: v, "max"),
    "min_speedup": ("speedup", lambda v: v, "min"),
    "max_size_mb": ("size_bytes", lambda v: v / MB, "max"),
    "max_peak_rss_mb": ("peak_rss_mb", lambda v: v, "max"),
}


def evaluate_gate(variant_name: str, metrics: Mapping[str, Any], gate: Optional[GateConfig]) -> dict[str, Any]:
    """``{"passed": bool, "checks": [{name, value, limit, passed, metric[, detail]}]}`` for one variant.

    Only thresholds set in ``gate`` are checked; no gate (or an empty one) passes with no checks, logged.
    """
    if gate is None or all(getattr(gate, key) is None for key in CHECKS):
        logger.warning("no gate configured for %s: it is published without checks", variant_name)
        return {"passed": True, "checks": []}
    checks = []
    for key, (metric, convert, kind) in CHECKS.items():
        limit = getattr(gate, key)
        if limit is None:
            continue
        raw = metrics.get(metric)
        check: dict[str, Any] = {"name": key, "metric": metric, "limit": limit}
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            check.update(value=None, passed=False, detail=f"{metric} was not measured, so {key} cannot pass")
        else:
            value = float(convert(raw))
            ok = value <= limit + TOLERANCE if kind == "max" else value >= limit - TOLERANCE
            check.update(value=value, passed=bool(ok))
        checks.append(check)
        if not check["passed"]:
            logger.info("gate %s: %s failed (value %s, limit %s)", variant_name, key, check["value"], limit)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
