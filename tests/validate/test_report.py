"""Reports render from plain data, including unmeasured (None) metrics and failed gates."""

from __future__ import annotations

import json

from structbert_lite.validate.report import (
    build_report,
    fastest_published,
    plot_latency,
    render_markdown,
    summary_table,
    write_report_json,
)

GRID = [{"batch": b, "seq_len": s, "p50": s / 10 * b, "p95": s / 9, "p99": s / 8, "mean": s / 10}
        for b in (1, 8) for s in (16, 32)]


def sample_report(passed: bool = False) -> dict:
    base = {"name": "pytorch-fp32", "path": "ckpt", "metrics": {
        "accuracy": 0.9, "macro_f1": 0.9,
        "per_class": {"Negative": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 5}},
        "latency_ms": {"batch": 1, "seq_len": 32, "p50": 3.2, "p95": 3.5, "p99": 3.6}, "latency_grid": GRID,
        "size_bytes": 400 * 2**20, "peak_rss_mb": None}}
    gate = {"passed": passed, "checks": [
        {"name": "min_speedup", "metric": "speedup", "value": 1.2, "limit": 1.5, "passed": passed},
        {"name": "max_peak_rss_mb", "metric": "peak_rss_mb", "value": None, "limit": 500, "passed": False,
         "detail": "peak_rss_mb was not measured, so max_peak_rss_mb cannot pass"}]}
    variant = {"name": "int8-dynamic", "published": False, "path": None, "required": True, "gate": gate,
               "metrics": {**base["metrics"], "accuracy_drop": 0.4, "agreement": 0.99, "max_abs_logit_diff": 0.03,
                           "speedup": 1.2, "flipped_count": 1},
               "flipped": [{"text": "还|行", "gold": "Positive", "baseline": "Positive", "variant": "Negative"}]}
    settings = {"threads": 2, "max_length": 128, "speedup_point": [1, 32], "throughput_batch_size": 32}
    eval_info = {"source": "e.jsonl", "total_rows": 10, "used_rows": 9,
                 "bad_rows": {"empty_text": 1, "unknown_label": 0}}
    machine = {"cpu": "test CPU", "cpu_flags": ["avx2"], "logical_cpus": 2, "threads": 2}
    return build_report("demo", base, [variant], eval_info, settings, {"name": "demo"}, machine,
                        {"onnxruntime": "1.32.0"})


def test_markdown_and_tables(tmp_path):
    report = sample_report()
    assert not report["passed"] and report["versions"]["onnxruntime"]
    md = render_markdown(report)
    assert "✗ at least one variant failed" in md
    assert "| int8-dynamic | max_peak_rss_mb | — | 500 | ✗ |" in md
    assert "还\\|行" in md  # table cells are escaped
    assert "| pytorch-fp32 | 1 | 1.60 | 3.20 |" in md and "| pytorch-fp32 | 8 | 12.80 | 25.60 |" in md
    table = summary_table(report)
    assert "✗ int8-dynamic: max_peak_rss_mb — peak_rss_mb was not measured" in table
    assert "✗ int8-dynamic: min_speedup — value 1.2 vs limit 1.5" in table

    path = write_report_json(report, tmp_path / "report.json")
    assert json.loads(path.read_text(encoding="utf-8"))["variants"][0]["gate"]["checks"][1]["value"] is None
    assert plot_latency(report, tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_markdown_flags_unverified_speed_and_shows_long_texts():
    report = sample_report(passed=True)
    report["settings"]["speed_trust"] = {"verified": False, "reasons": ["threads waited for a core 84% of the time"]}
    report["variants"][0]["gate"] = {"passed": True, "speed_verified": False, "checks": [
        {"name": "min_speedup", "metric": "speedup", "value": 888.0, "limit": 1.5, "passed": True, "verified": False}]}
    report["variants"][0]["batch_invariance"] = {"invariant": False, "max_abs_score_diff": 5.7e-3}
    report["variants"][0]["metrics"]["speedup"] = 888.0
    report["length_buckets"] = {"max_length": 128, "truncated_share": 0.2, "truncated_rows": 2, "buckets": [
        {"bucket": "≤64", "rows": 8, "baseline_accuracy": 0.9,
         "variants": {"int8-dynamic": {"accuracy": 0.9, "agreement": 1.0}}},
        {"bucket": ">256", "rows": 2, "baseline_accuracy": 0.5,
         "variants": {"int8-dynamic": {"accuracy": 0.5, "agreement": 1.0}}}],
        "truncation": {"rows": 2, "head": 0.5, "head+tail": 1.0}}
    md = render_markdown(report)
    assert "**Speed not verified**" in md and "threads waited for a core" in md
    assert "| int8-dynamic | min_speedup | 888 | 1.5 | ✓ (speed not verified) |" in md
    assert "888.00x (not verified)" in md and "no: served one at a time" in md
    assert "2 eval texts (20.0%) are longer than 128 tokens" in md and "head+tail): 1.0000" in md


def _published(name: str, speedup: float, drop: float, agreement: float) -> dict:
    return {"name": name, "published": True, "path": name, "required": True, "gate": {"passed": True, "checks": []},
            "metrics": {"speedup": speedup, "accuracy_drop": drop, "agreement": agreement}, "flipped": []}


def test_the_fastest_published_variant_is_named_and_a_student_beside_the_source_models_own():
    report = sample_report()
    report["variants"] += [_published("fp32", 1.8, 0.0, 1.0), _published("int8-dynamic-2", 3.8, 0.1, 0.999),
                           _published("student-int8", 12.3, 0.5, 0.968)]
    report["config"] = {"variants": [
        {"name": "fp32", "step": "export", "parent": "source"},
        {"name": "int8-dynamic-2", "step": "ort-dynamic-int8", "parent": "fp32"},
        {"name": "student", "step": "distill", "parent": "source"},
        {"name": "student-int8", "step": "ort-dynamic-int8", "parent": "student"}]}
    line = fastest_published(report)
    assert line == ("Fastest published variant at 1×32 on this CPU: student-int8, 12.30x PyTorch FP32 (accuracy drop "
                    "+0.50 pts, agreement 0.9680); of the source model's own variants: int8-dynamic-2, 3.80x PyTorch "
                    "FP32 (accuracy drop +0.10 pts, agreement 0.9990).")
    assert "**student-int8**" in render_markdown(report)
    # measured, not published
    report["variants"].append({**_published("openvino-int8", 2.0, 0.1, 0.997), "published": False})
    report["config"]["variants"].append({"name": "openvino-int8", "step": "openvino-int8", "parent": "fp32"})
    assert fastest_published(report).endswith("; student-int8 is 6.15x the source model's OpenVINO + NNCF int8 "
                                              "(openvino-int8) in the same run.")
    report["variants"].pop()
    report["config"]["variants"].pop()
    report["variants"].pop()  # without the student: one variant named; the unpublished 1.2x one never is
    report["settings"]["speed_trust"] = {"verified": False, "reasons": []}
    assert fastest_published(report).startswith("Fastest published variant at 1×32 on this CPU: int8-dynamic-2, 3.80x")
    assert fastest_published(report).endswith("agreement 0.9990) (speed not verified).")
    report["variants"] = report["variants"][:1]
    assert fastest_published(report) is None


def test_an_optional_variant_that_failed_does_not_fail_the_report():
    report = sample_report()
    report["variants"][0]["required"] = False
    rebuilt = build_report("demo", report["baseline"], report["variants"], report["eval"], report["settings"],
                           report["config"], report["machine"], report["versions"])
    assert rebuilt["passed"]
    md = render_markdown(rebuilt)
    assert "optional, failed and left out: int8-dynamic" in md and "✗ FAIL, not published (optional)" in md
