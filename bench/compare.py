"""Ratios between contenders, and the issue's "done when" checks, as pure functions over the results.

Ratios are speedups (> 1: faster): ``vs_baseline`` = baseline p50 / contender p50 (for throughput:
contender texts/s / baseline texts/s); ``vs_best_peer`` = the fastest peer's figure (baseline included,
ours excluded) over the contender's, so > 1 means faster than every peer at that point.
"""

from __future__ import annotations

from typing import Optional

BASELINE = "pytorch-fp32"
OURS_INT8 = "ours-int8-dynamic"
THROUGHPUT = "throughput"
# The issue's bar: our int8 beats every peer at these points and in throughput, and is 4x the baseline at 1x32.
WIN_POINTS = ("1x32", "1x128")
MIN_SPEEDUP_POINT, MIN_SPEEDUP = "1x32", 4.0
MAX_PROFILE_POINTS = 3


def _p50(entry: dict, point: str) -> Optional[float]:
    latency = entry.get("latency") or {}
    return latency[point]["p50_ms"] if point in latency else None


def _tps(entry: dict) -> Optional[float]:
    return entry["throughput"]["texts_per_s"] if entry.get("throughput") else None


def _peers(contenders: dict) -> dict:
    return {n: e for n, e in contenders.items() if e["group"] in ("baseline", "peer")}


def best_peer_at(contenders: dict, point: str) -> tuple[Optional[str], Optional[float]]:
    """(name, figure) of the fastest peer at ``point`` (lowest p50, or highest texts/s for throughput)."""
    if point == THROUGHPUT:
        figures = {n: _tps(e) for n, e in _peers(contenders).items() if _tps(e)}
        return max(figures.items(), key=lambda kv: kv[1]) if figures else (None, None)
    figures = {n: _p50(e, point) for n, e in _peers(contenders).items() if _p50(e, point)}
    return min(figures.items(), key=lambda kv: kv[1]) if figures else (None, None)


def compare(contenders: dict) -> dict:
    """{point: {"baseline", "best_peer", "best_peer_value", "ratios": {name: {"vs_baseline", "vs_best_peer"}}}}."""
    points = []
    for entry in contenders.values():
        for point in entry.get("latency") or {}:
            if point not in points:
                points.append(point)
    points.append(THROUGHPUT)
    base = contenders.get(BASELINE, {})
    table = {}
    for point in points:
        peer, peer_value = best_peer_at(contenders, point)
        base_value = _tps(base) if point == THROUGHPUT else _p50(base, point)
        ratios = {}
        for name, entry in contenders.items():
            value = _tps(entry) if point == THROUGHPUT else _p50(entry, point)
            if not value:
                continue
            if point == THROUGHPUT:
                ratios[name] = {"vs_baseline": value / base_value if base_value else None, "vs_best_peer": value / peer_value if peer_value else None}
            else:
                ratios[name] = {"vs_baseline": base_value / value if base_value else None, "vs_best_peer": peer_value / value if peer_value else None}
        table[point] = {"baseline": base_value, "best_peer": peer, "best_peer_value": peer_value, "ratios": ratios}
    return table


def _check(name: str, value: Optional[float], limit: float) -> dict:
    return {"name": name, "value": value, "limit": limit, "passed": None if value is None else value >= limit}


def issue_checks(contenders: dict, comparisons: dict) -> list[dict]:
    """The issue's "done when" as {name, value, limit, passed} (passed None: not measured / pending)."""
    def ratio(point: str, key: str) -> Optional[float]:
        return (comparisons.get(point, {}).get("ratios", {}).get(OURS_INT8) or {}).get(key)

    checks = [_check(f"ours-int8-dynamic faster than every peer at {p} (best peer p50 / ours p50)", ratio(p, "vs_best_peer"), 1.0) for p in WIN_POINTS]
    checks.append(_check("ours-int8-dynamic faster than every peer in corpus throughput (ours / best peer texts/s)", ratio(THROUGHPUT, "vs_best_peer"), 1.0))
    checks.append(_check(f"ours-int8-dynamic speedup vs PyTorch FP32 at {MIN_SPEEDUP_POINT}", ratio(MIN_SPEEDUP_POINT, "vs_baseline"), MIN_SPEEDUP))
    return checks


def losing_points(contenders: dict) -> list[tuple[int, int]]:
    """Grid points (batch, seq) where our int8 is slower than some peer; a lost throughput maps to 8x64
    (about the bucket shape of the reviews). At most ``MAX_PROFILE_POINTS``, worst first."""
    ours = contenders.get(OURS_INT8) or {}
    losses = []
    for point in ours.get("latency") or {}:
        _, peer_value = best_peer_at(contenders, point)
        if peer_value and _p50(ours, point) > peer_value:
            losses.append((_p50(ours, point) / peer_value, point))
    _, peer_tps = best_peer_at(contenders, THROUGHPUT)
    if peer_tps and _tps(ours) and _tps(ours) < peer_tps and "8x64" not in [p for _, p in losses]:
        losses.append((peer_tps / _tps(ours), "8x64"))
    ordered = [p for _, p in sorted(losses, reverse=True)][:MAX_PROFILE_POINTS]
    return [tuple(int(x) for x in p.split("x")) for p in ordered]
