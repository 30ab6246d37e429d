"""The distilled student against the teacher's own variant, from a run's ``report.json`` (`make distill`).

    python -m structbert_lite.train.compare_student OUT [--student student-int8] [--teacher int8-dynamic]
                                                        [--min-speedup 3] [--max-drop 1.5] [--min-agreement 0.95]

The gate compares every variant with the PyTorch FP32 teacher; what a user weighing the student asks is how it
does against the teacher they would otherwise serve (its int8): latency at the speedup point (1x32) and
throughput, both measured in the same run, plus the student's accuracy drop and label agreement against the
teacher. Prints one line per check; exit status 1 when a check fails (2 when the report lacks a variant).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


def _ratio(teacher: Optional[float], student: Optional[float]) -> Optional[float]:
    return teacher / student if teacher and student else None


def compare(report: dict, student: str, teacher: str, min_speedup: float, max_drop: float,
            min_agreement: float) -> dict:
    """{"checks": [{name, student, teacher, value, limit, passed}], "speed_verified": bool}."""
    entries = {v["name"]: v for v in report.get("variants", [])}
    missing = [n for n in (student, teacher) if not (entries.get(n) or {}).get("metrics")]
    if missing:
        raise KeyError(f"report has no measured variant {', '.join(missing)} (built and published variants: "
                       f"{', '.join(n for n, v in entries.items() if v.get('metrics')) or 'none'})")
    s, t = entries[student]["metrics"], entries[teacher]["metrics"]
    point = s.get("latency_ms") or {}
    s_ms, t_ms = point.get("p50"), (t.get("latency_ms") or {}).get("p50")
    s_tps, t_tps = s.get("throughput_texts_per_s"), t.get("throughput_texts_per_s")
    rows: list[dict[str, Any]] = [
        {"name": f"latency p50 at {point.get('batch')}x{point.get('seq_len')} (ms)", "student": s_ms, "teacher": t_ms,
         "value": _ratio(t_ms, s_ms), "limit": min_speedup, "kind": "min", "unit": "x faster"},
        {"name": "throughput (texts/s)", "student": s_tps, "teacher": t_tps, "value": _ratio(s_tps, t_tps),
         "limit": min_speedup, "kind": "min", "unit": "x faster"},
        {"name": "accuracy drop vs the PyTorch teacher (points)", "student": s.get("accuracy"),
         "teacher": report["baseline"]["metrics"].get("accuracy"), "value": s.get("accuracy_drop"), "limit": max_drop,
         "kind": "max", "unit": "pt"},
        {"name": "label agreement with the PyTorch teacher", "student": s.get("agreement"), "teacher": None,
         "value": s.get("agreement"), "limit": min_agreement, "kind": "min", "unit": ""},
    ]
    for row in rows:
        value = row["value"]
        row["passed"] = value is not None and (value >= row["limit"] if row["kind"] == "min" else value <= row["limit"])
    verified = bool(((report.get("settings") or {}).get("speed_trust") or {}).get("verified"))
    return {"student": student, "teacher": teacher, "checks": rows, "speed_verified": verified}


def format_comparison(result: dict) -> str:
    lines = [f"{result['student']} (student) vs {result['teacher']} (teacher), same run"
             f"{'' if result['speed_verified'] else ' — speed NOT verified: the machine was busy (see report.md)'}:"]
    for row in result["checks"]:
        value = "not measured" if row["value"] is None else f"{row['value']:.3f}{row['unit'] and ' ' + row['unit']}"
        sides = ""
        if row["student"] is not None and row["teacher"] is not None:
            sides = f" (student {row['student']:.4g}, teacher {row['teacher']:.4g})"
        bound = "≥" if row["kind"] == "min" else "≤"
        lines.append(f"  {'✓' if row['passed'] else '✗'} {row['name']}: {value}{sides}, bound {bound} {row['limit']}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m structbert_lite.train.compare_student",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a run's output folder (holds report.json)")
    parser.add_argument("--student", default="student-int8")
    parser.add_argument("--teacher", default="int8-dynamic")
    parser.add_argument("--min-speedup", type=float, default=3.0)
    parser.add_argument("--max-drop", type=float, default=1.5, help="accuracy points")
    parser.add_argument("--min-agreement", type=float, default=0.95)
    args = parser.parse_args(argv)
    path = args.out / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        result = compare(report, args.student, args.teacher, args.min_speedup, args.max_drop, args.min_agreement)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    print(format_comparison(result))
    return 0 if all(row["passed"] for row in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
