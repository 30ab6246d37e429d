"""The benchmark harness end to end in --quick mode (tiny model: hidden 32, 2 layers), plus its pure parts.

The end-to-end run builds every contender, measures each in fresh worker processes and writes the three
outputs. Two deliberately broken contenders check that failures are reported, not dropped.
"""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from structbert_lite.bench import compare
from structbert_lite.bench.prepare import CONTENDERS, Contender, ContenderSpec
from structbert_lite.bench.profiling import aggregate_by_op_type
from structbert_lite.bench.runner import CONTENDER_KEYS, RESULT_KEYS, run_benchmark
from structbert_lite.bench.settings import TINY_SHAPE, BenchSettings
from structbert_lite.bench.workload import forward_flops, matmul_params, synthetic_feed

QUICK_GRID = ((1, 16), (1, 32), (1, 128), (8, 64))
TIME_LIMIT_S = 60.0


def _missing_package(prep):
    raise ImportError("No module named 'not_a_real_runtime'")


def _missing_file(prep):
    return ContenderSpec("broken-file", "ort", str(prep.work / "does-not-exist.onnx"), str(prep.tokenizer_dir))


BROKEN = {
    "broken-import": Contender("broken-import", "peer", "fp32", "a peer whose package is missing", _missing_package),
    "broken-file": Contender("broken-file", "peer", "fp32", "a peer whose worker crashes", _missing_file),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    settings = BenchSettings.quick_run(latency_grid=QUICK_GRID, throughput_rows=32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("structbert_lite.bench.runner.CONTENDERS", {**CONTENDERS, **BROKEN})
        started = time.perf_counter()
        results = run_benchmark(settings, out, command="pytest")
        elapsed = time.perf_counter() - started
    return out, results, elapsed


def test_quick_run_writes_the_three_outputs_in_time(quick_run):
    out, _, elapsed = quick_run
    assert (out / "results.json").is_file()
    assert "# structbert-lite benchmark" in (out / "report.md").read_text(encoding="utf-8")
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert elapsed < TIME_LIMIT_S, f"quick benchmark took {elapsed:.0f} s"


def test_results_json_has_the_documented_keys(quick_run):
    out, _, _ = quick_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(RESULT_KEYS) <= set(results)
    assert set(results["flops"]) == {f"{b}x{s}" for b, s in QUICK_GRID}
    assert results["ceilings"]["fp32"]["gflops_best"] > 0 and results["ceilings"]["int8"]["gflops_best"] > 0
    assert results["machine"]["threads"] == 2 and results["machine"]["versions"]["onnxruntime"]
    assert results["machine"]["cpu"]["model"]
    assert "random weights" in results["model"]["weights"]
    for check in results["checks"]:
        assert set(check) == {"name", "value", "limit", "passed"}
    for entry in results["contenders"].values():
        assert set(CONTENDER_KEYS) <= set(entry)


def test_every_contender_has_figures_or_an_error(quick_run):
    _, results, _ = quick_run
    assert set(CONTENDERS) | set(BROKEN) == set(results["contenders"])
    for name, entry in results["contenders"].items():
        assert entry["latency"] or entry["error"], name
        if entry["status"] == "ok":
            assert all(v["p50_ms"] > 0 and v["p95_ms"] >= v["p50_ms"] * 0.999 for v in entry["latency"].values()), name
            assert entry["throughput"]["texts_per_s"] > 0 and entry["throughput"]["texts"] > 0, name
            assert entry["cold_start"]["s"] > 0 and entry["memory"]["peak_rss_mb"] > 0, name
            assert entry["ceiling_share"]["1x32"]["share_of_ceiling"] > 0, name
    assert results["contenders"]["broken-import"]["error"].startswith("not installed")
    assert "worker exited" in results["contenders"]["broken-file"]["error"]


def test_baseline_and_ours_are_measured(quick_run):
    _, results, _ = quick_run
    contenders = results["contenders"]
    assert contenders["pytorch-fp32"]["status"] == "ok"
    assert contenders["ours-int8-dynamic"]["status"] == "ok", contenders["ours-int8-dynamic"]["error"]
    assert results["comparisons"]["1x32"]["ratios"]["pytorch-fp32"]["vs_baseline"] == pytest.approx(1.0)


def test_openvino_is_measured_or_reported_failed(quick_run):
    _, results, _ = quick_run
    entry = results["contenders"]["openvino-fp32"]
    if importlib.util.find_spec("openvino") is None:
        assert entry["status"] == "failed" and "openvino" in entry["error"]
        pytest.skip("openvino is not installed: reported as failed, as it should be")
    assert entry["status"] == "ok", entry["error"]
    assert entry["options"]["INFERENCE_PRECISION_HINT"] == "f32"


# ── pure parts ────────────────────────────────────────────────────────────────────────────────────────────


def test_flops_of_structbert_base():
    base = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
    assert matmul_params(base) == 12 * (4 * 768 * 768 + 2 * 768 * 3072) == 84_934_656
    assert forward_flops(base, 1, 32) == 2 * 84_934_656 * 32 + 12 * 4 * 32 * 32 * 768 + 2 * (768 * 768 + 768 * 2)
    assert forward_flops(TINY_SHAPE, 2, 16) == 2 * forward_flops(TINY_SHAPE, 1, 16)


def test_synthetic_feed_has_exact_length_and_is_reproducible():
    feed = synthetic_feed(8, 64, 21128, seed=1)
    assert feed["input_ids"].shape == (8, 64) and feed["attention_mask"].all()
    assert (feed["input_ids"][:, 0] == 2).all() and (feed["input_ids"][:, -1] == 3).all()
    assert (synthetic_feed(8, 64, 21128, seed=1)["input_ids"] == feed["input_ids"]).all()


def _entry(group, p50=None, tps=None):
    return {
        "group": group,
        "latency": {point: {"p50_ms": value} for point, value in (p50 or {}).items()},
        "throughput": {"texts_per_s": tps} if tps else None,
    }


def test_ratios_and_losing_points():
    contenders = {
        "pytorch-fp32": _entry("baseline", {"1x32": 100.0, "1x128": 200.0}, tps=10.0),
        "peer": _entry("peer", {"1x32": 30.0, "1x128": 40.0}, tps=50.0),
        "ours-int8-dynamic": _entry("ours", {"1x32": 20.0, "1x128": 45.0}, tps=40.0),
    }
    table = compare.compare(contenders)
    ours = {p: table[p]["ratios"]["ours-int8-dynamic"] for p in ("1x32", "1x128", "throughput")}
    assert ours["1x32"] == {"vs_baseline": 5.0, "vs_best_peer": 1.5}
    assert ours["1x128"]["vs_best_peer"] == pytest.approx(40 / 45)
    assert ours["throughput"] == {"vs_baseline": 4.0, "vs_best_peer": 0.8}
    assert table["1x128"]["best_peer"] == "peer"
    checks = {c["name"].split(" (")[0]: c["passed"] for c in compare.issue_checks(contenders, table)}
    assert list(checks.values()) == [True, False, False, True]
    assert compare.losing_points(contenders) == [(8, 64), (1, 128)]  # worst first


def test_checks_are_pending_without_our_int8():
    contenders = {"pytorch-fp32": _entry("baseline", {"1x32": 100.0})}
    assert all(c["passed"] is None for c in compare.issue_checks(contenders, compare.compare(contenders)))


def test_profile_aggregates_kernel_time_by_op_type_without_the_warm_up():
    trace = [
        {"name": "model_run", "cat": "Session", "ts": 0, "dur": 100},
        {"name": "a_kernel_time", "cat": "Node", "ts": 10, "dur": 90, "args": {"op_name": "QAttention"}},
        {"name": "model_run", "cat": "Session", "ts": 200, "dur": 50},
        {"name": "a_kernel_time", "cat": "Node", "ts": 210, "dur": 30, "args": {"op_name": "QAttention"}},
        {"name": "b_kernel_time", "cat": "Node", "ts": 240, "dur": 10, "args": {"op_name": "MatMulInteger"}},
    ]
    ops = aggregate_by_op_type(trace, skip_runs=1)
    assert list(ops) == ["QAttention", "MatMulInteger"]
    assert ops["QAttention"]["ms_per_run"] == pytest.approx(0.03) and ops["QAttention"]["share"] == pytest.approx(0.75)
