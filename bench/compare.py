"""Ratios between contenders, and the issues' "done when" checks, as pure functions over the results.

Ratios are speedups (> 1: faster): ``vs_baseline`` = baseline p50 / contender p50 (for throughput: contender
texts/s / baseline texts/s); ``vs_best_peer`` = the fastest peer's figure (baseline included, ours excluded)
over the contender's, so > 1 means faster than every peer at that point. Across shapes, each student
contender is compared with the teacher (base shape): PyTorch FP32 and our int8.
"""

from __future__ import annotations

from typing import Optional

BASELINE = "pytorch-fp32"
OURS_INT8 = "ours-int8-dynamic"
THROUGHPUT = "throughput"
# Issue 13: our fastest published variant >= every peer at these points and in throughput, >= 5x PyTorch FP32 at 1x32.
WIN_POINTS = ("1x32", "1x128", "8x64", "32x128")
MIN_SPEEDUP_POINT, MIN_SPEEDUP = "1x32", 5.0
# Issue 14: the student's int8 >= 3x the teacher's int8 at 1x32 and in throughput.
STUDENT_POINT, STUDENT_MIN_SPEEDUP = "1x32", 3.0
MAX_PROFILE_POINTS = 3


def figure(entry: dict, point: str) -> Optional[float]:
    """p50 ms at a grid point, or texts/s for ``THROUGHPUT`` (None if not measured)."""
    if point == THROUGHPUT:
        return entry["throughput"]["texts_per_s"] if entry.get("throughput") else None
    return ((entry.get("latency") or {}).get(point) or {}).get("p50")


def faster(point: str, a: float, b: float) -> float:
    """How many times ``a`` is faster than ``b`` (latency: b / a; throughput: a / b)."""
    return a / b if point == THROUGHPUT else b / a


def best_at(contenders: dict, point: str, groups: tuple) -> tuple[Optional[str], Optional[float]]:
    """(name, figure) of the fastest contender of ``groups`` at ``point``."""
    figures = {n: figure(e, point) for n, e in contenders.items() if e["group"] in groups and figure(e, point)}
    if not figures:
        return None, None
    pick = max if point == THROUGHPUT else min
    name = pick(figures, key=figures.get)
    return name, figures[name]


def points_of(contenders: dict) -> list[str]:
    points = []
    for entry in contenders.values():
        points += [p for p in entry.get("latency") or {} if p not in points]
    return points + [THROUGHPUT]


def compare(contenders: dict) -> dict:
    """{point: {baseline, best_peer, best_peer_value, best_ours, best_ours_value,
    ratios: {name: {vs_baseline, vs_best_peer}}}}."""
    table = {}
    for point in points_of(contenders):
        peer, peer_value = best_at(contenders, point, ("baseline", "peer"))
        mine, mine_value = best_at(contenders, point, ("ours",))
        base_value = figure(contenders.get(BASELINE, {"group": "baseline"}), point)
        ratios = {}
        for name, entry in contenders.items():
            value = figure(entry, point)
            if value:
                ratios[name] = {"vs_baseline": faster(point, value, base_value) if base_value else None,
                                "vs_best_peer": faster(point, value, peer_value) if peer_value else None}
        table[point] = {"baseline": base_value, "best_peer": peer, "best_peer_value": peer_value,
                        "best_ours": mine, "best_ours_value": mine_value, "ratios": ratios}
    return table


def _check(name: str, value: Optional[float], limit: float) -> dict:
    return {"name": name, "value": value, "limit": limit, "passed": None if value is None else value >= limit}


def issue_checks(shape: str, contenders: dict, comparisons: dict) -> list[dict]:
    """Issue 13's "done when" for one shape as {name, value, limit, passed} (passed None: not measured)."""
    checks = []
    for point in WIN_POINTS + (THROUGHPUT,):
        row = comparisons.get(point) or {}
        both = row.get("best_ours_value") and row.get("best_peer_value")
        value = faster(point, row["best_ours_value"], row["best_peer_value"]) if both else None
        where = "corpus throughput" if point == THROUGHPUT else point
        name = (f"{shape}: our fastest ({row.get('best_ours') or '—'}) vs the best peer "
                f"({row.get('best_peer') or '—'}) at {where}")
        checks.append(_check(name, value, 1.0))
    row = comparisons.get(MIN_SPEEDUP_POINT) or {}
    both = row.get("best_ours_value") and row.get("baseline")
    value = faster(MIN_SPEEDUP_POINT, row["best_ours_value"], row["baseline"]) if both else None
    checks.append(_check(f"{shape}: our fastest ({row.get('best_ours') or '—'}) vs PyTorch FP32 at {MIN_SPEEDUP_POINT}",
                         value, MIN_SPEEDUP))
    return checks + batching_checks(shape, contenders)


NNCF_PEER = "openvino-int8-nncf"
# Issue 19: corpus throughput with invariant batching >= this many times the same variant one text per call.
MIN_BATCHING_GAIN = 1.5


def fastest_int8(contenders: dict, point: str) -> tuple[Optional[str], Optional[float]]:
    """(name, figure) of our fastest int8 contender at ``point``."""
    ours_int8 = {n: e for n, e in contenders.items() if e["group"] == "ours" and e["precision"] == "int8"}
    return best_at(ours_int8, point, ("ours",))


def cross_shape(shapes: dict) -> Optional[dict]:
    """{student contender: {point: {"vs_teacher_fp32", "vs_teacher_int8", "teacher_int8", "vs_teacher_nncf"}}}: the
    student against the teacher's PyTorch FP32, our fastest int8 and OpenVINO + NNCF int8 on the base shape (None
    unless both shapes ran). The teacher's fastest int8 is picked per point."""
    if "base" not in shapes or "student" not in shapes:
        return None
    teacher = shapes["base"]["contenders"]
    table = {}
    for name, entry in shapes["student"]["contenders"].items():
        rows = {}
        for point in points_of({name: entry}):
            mine = figure(entry, point)
            if not mine:
                continue
            fp32, nncf = figure(teacher.get(BASELINE, {}), point), figure(teacher.get(NNCF_PEER, {}), point)
            fastest, int8 = fastest_int8(teacher, point)
            rows[point] = {"vs_teacher_fp32": faster(point, mine, fp32) if fp32 else None,
                           "vs_teacher_int8": faster(point, mine, int8) if int8 else None, "teacher_int8": fastest,
                           "vs_teacher_nncf": faster(point, mine, nncf) if nncf else None}
        table[name] = rows
    return table


def cross_checks(shapes: dict, cross: Optional[dict]) -> list[dict]:
    """Issues 14/19: the student's fastest int8 vs the teacher's fastest int8 and vs its OpenVINO + NNCF int8,
    at 1x32 and in corpus throughput."""
    if cross is None:
        return []
    checks = []
    for point, where in ((STUDENT_POINT, STUDENT_POINT), (THROUGHPUT, "corpus throughput")):
        student, _ = fastest_int8(shapes["student"]["contenders"], point)
        row = (cross.get(student) or {}).get(point) or {}
        teacher_int8 = row.get("teacher_int8") or "—"
        checks.append(_check(f"student {student or '—'} vs the teacher's fastest int8 ({teacher_int8}) at {where}",
                             row.get("vs_teacher_int8"), STUDENT_MIN_SPEEDUP))
        checks.append(_check(f"student {student or '—'} vs the teacher's {NNCF_PEER} at {where}",
                             row.get("vs_teacher_nncf"), STUDENT_MIN_SPEEDUP))
    return checks


def batching_checks(shape: str, contenders: dict) -> list[dict]:
    """Corpus throughput with invariant (exact-length) batching vs the same variant one text per call."""
    checks = []
    for name, entry in contenders.items():
        batched, alone = entry.get("throughput") or {}, entry.get("throughput_one_text") or {}
        if batched.get("batching") == "exact-length" and alone.get("texts_per_s"):
            checks.append(_check(f"{shape}: {name} corpus throughput, exact-length batches vs one text per call",
                                 batched["texts_per_s"] / alone["texts_per_s"], MIN_BATCHING_GAIN))
    return checks


def losing_points(contenders: dict) -> list[tuple[int, int]]:
    """Grid points (batch, seq) where our int8 is slower than some peer; a lost throughput maps to 8x64
    (about the bucket shape of the reviews). At most ``MAX_PROFILE_POINTS``, worst first."""
    ours = contenders.get(OURS_INT8) or {}
    losses = []
    for point in points_of(contenders):
        _, peer_value = best_at(contenders, point, ("baseline", "peer"))
        mine = figure(ours, point)
        if peer_value and mine and faster(point, mine, peer_value) < 1.0:
            losses.append((1.0 / faster(point, mine, peer_value), "8x64" if point == THROUGHPUT else point))
    ordered = list(dict.fromkeys(p for _, p in sorted(losses, reverse=True)))[:MAX_PROFILE_POINTS]
    return [tuple(int(x) for x in p.split("x")) for p in ordered]
