"""Can these speed figures be trusted? A verdict with reasons, from the figures and the machine's state.

A shared machine turns speed ratios into noise: PyTorch's p50 at 1×32 collapsed to 172 ms while its 8×32 took
2 ms, and a gate measured then published int8 speedups of 407x, 888x and 2004x. So a measurement is
*verified* only when none of these signs of contention shows:

- run-queue wait: our worker's threads waited for a core (``/proc/self/task/*/schedstat``); default limit > 10% of
  their runnable time
- steal: the hypervisor gave our vCPUs to someone else (``/proc/stat``); > 10% of machine time
- load average: 1-minute load above what our own worker (``threads``) explains; > 0.5 extra per core (median of
  samples)
- baseline spread: the baseline's p95 / p50 at the speedup point; > 1.6
- rounds disagree: a contender's slowest / fastest round p50 at the speedup point; > 1.5
- implausible grid: more work ran faster: a batch of b > 1 texts in less than half the time of fewer texts at the
  same length, or a longer input in less than half the time of a shorter one; ratio < 0.5

Pure functions over `runner.Measurement`-shaped data, so recorded numbers can be judged in tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np


@dataclasses.dataclass
class TrustLimits:
    max_attempts: int = 3  # measurements before giving up and returning "not verified"
    backoff_s: float = 5.0  # pause after attempt n: n × backoff_s (let a passing burst end)
    max_run_queue_wait_share: float = 0.10
    max_steal_share: float = 0.10
    max_excess_load_per_core: float = 0.5
    max_baseline_p95_over_p50: float = 1.6
    max_round_spread: float = 1.5
    min_work_time_ratio: float = 0.5

    @classmethod
    def from_config(cls, vcfg: Any) -> "TrustLimits":
        """From same-named keys of ``vcfg`` (e.g. ``validate.max_attempts``), overridden by a ``vcfg.trust``
        section if there is one; missing keys keep their defaults."""
        values = {}
        for source in (vcfg, getattr(vcfg, "trust", None)):
            for field in dataclasses.fields(cls):
                if getattr(source, field.name, None) is not None:
                    values[field.name] = getattr(source, field.name)
        return cls(**values)


def _point(key: str) -> tuple[int, int]:
    batch, seq = key.split("x")
    return int(batch), int(seq)


def implausible_grid(name: str, latency: dict, min_ratio: float) -> list[str]:
    """Reasons where more work (more texts, or longer texts) took less than ``min_ratio`` of the time."""
    p50 = {_point(k): v["p50"] for k, v in latency.items() if v.get("p50")}
    reasons = []
    for (b1, s1), t1 in sorted(p50.items()):
        for (b2, s2), t2 in sorted(p50.items()):
            more_work = (b2 > b1 and s2 == s1) or (s2 > s1 and b2 == b1)
            if more_work and t2 < min_ratio * t1:
                reasons.append(
                    f"{name}: {b2}×{s2} took {t2:.2f} ms but {b1}×{s1} took {t1:.2f} ms — more work cannot run "
                    f"{t1 / t2:.1f}x faster; the smaller shape was disturbed"
                )
    return reasons


def rounds_spread(contenders: dict, point: str) -> dict[str, Optional[float]]:
    """Per contender: slowest / fastest round p50 at ``point`` (None with fewer than two rounds)."""
    spread = {}
    for name, entry in contenders.items():
        rounds = ((entry.get("latency") or {}).get(point) or {}).get("rounds_p50") or []
        spread[name] = max(rounds) / min(rounds) if len(rounds) > 1 and min(rounds) > 0 else None
    return spread


def excess_load_per_core(samples: list[float], threads: int, cpus: int) -> Optional[float]:
    """Median 1-minute load beyond our own worker's threads, per core (None without samples)."""
    if not samples:
        return None
    return max(float(np.median(samples)) - min(threads, cpus), 0.0) / max(cpus, 1)


def _load_samples(measured: Any) -> list[float]:
    samples = [load[0] for load in measured.load_before if load]
    for entry in measured.contenders.values():
        samples += [load[0] for load in entry.get("load_average_after") or [] if load]
    return samples


def _machine_reasons(measured: Any, limits: TrustLimits, cpus: int) -> tuple[list[str], dict]:
    reasons, record = [], {}
    waits = {n: (e.get("contention") or {}).get("run_queue_wait_share") for n, e in measured.contenders.items()}
    record["run_queue_wait_share"] = waits
    waited = sorted((share, name) for name, share in waits.items()
                    if share is not None and share > limits.max_run_queue_wait_share)
    if waited:
        worst, name = waited[-1]
        who = name if len(waited) == 1 else f"{len(waited)} of {len(waits)} contenders (worst: {name})"
        reasons.append(f"{who}: threads waited for a core up to {worst:.0%} of the time (limit "
                       f"{limits.max_run_queue_wait_share:.0%}): other processes competed for the CPUs")
    steals = [(e.get("contention") or {}).get("steal_share") for e in measured.contenders.values()]
    record["steal_share"] = max((s for s in steals if s is not None), default=None)
    if record["steal_share"] is not None and record["steal_share"] > limits.max_steal_share:
        reasons.append(f"the hypervisor took {record['steal_share']:.0%} of CPU time "
                       f"(steal; limit {limits.max_steal_share:.0%})")
    samples = _load_samples(measured)
    record["load_average"] = samples
    excess = excess_load_per_core(samples, measured.plan.threads, cpus)
    record["excess_load_per_core"] = excess
    if excess is not None and excess > limits.max_excess_load_per_core:
        reasons.append(
            f"1-minute load average {np.median(samples):.2f} on {cpus} CPUs is {excess:.2f} per core above what our "
            f"worker's {measured.plan.threads} threads explain (limit {limits.max_excess_load_per_core})"
        )
    return reasons, record


def _figure_reasons(measured: Any, baseline: str, point: str, limits: TrustLimits) -> tuple[list[str], dict]:
    reasons, record = [], {}
    base = measured.contenders.get(baseline) or {}
    at_point = (base.get("latency") or {}).get(point)
    if not at_point:
        reasons.append(f"the baseline {baseline} was not measured at {point}: {base.get('error') or 'no figures'}")
        record["baseline_p95_over_p50"] = None
    else:
        record["baseline_p95_over_p50"] = at_point["p95"] / at_point["p50"]
        if record["baseline_p95_over_p50"] > limits.max_baseline_p95_over_p50:
            reasons.append(f"{baseline}: p95 / p50 at {point} is {record['baseline_p95_over_p50']:.2f} "
                           f"(limit {limits.max_baseline_p95_over_p50}): its runs were disturbed")
    record["rounds_spread"] = rounds_spread(measured.contenders, point)
    for name, spread in record["rounds_spread"].items():
        if spread is not None and spread > limits.max_round_spread:
            reasons.append(f"{name}: its rounds disagree at {point} "
                           f"(slowest / fastest p50 = {spread:.2f}, limit {limits.max_round_spread})")
    for name, entry in measured.contenders.items():
        reasons += implausible_grid(name, entry.get("latency") or {}, limits.min_work_time_ratio)
    return reasons, record


def assess(measured: Any, baseline: str, point: str, limits: TrustLimits, cpus: Optional[int] = None) -> dict:
    """``{"verified", "reasons", "load_average", "rounds_spread", "baseline_p95_over_p50", ...}`` for one attempt.

    ``measured`` is a `runner.Measurement` (``plan.threads``, ``contenders``, ``load_before``); ``point`` is
    the grid key that defines speedup (e.g. ``"1x32"``); ``cpus`` defaults to this process's usable CPUs.
    """
    if cpus is None:
        from structbert_lite.measure.machine import usable_cpus

        cpus = usable_cpus()
    machine_reasons, record = _machine_reasons(measured, limits, cpus)
    figure_reasons, figures = _figure_reasons(measured, baseline, point, limits)
    reasons = machine_reasons + figure_reasons
    return {"verified": not reasons, "reasons": reasons, **record, **figures, "cpus": cpus,
            "limits": dataclasses.asdict(limits)}
