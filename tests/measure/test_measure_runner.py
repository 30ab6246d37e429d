"""The measurement core with real worker processes on a tiny model: every kind, failures, rounds, memory."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from structbert_lite.measure import runner
from structbert_lite.measure.contenders import ContenderSpec
from structbert_lite.measure.plan import MeasurePlan

TORCH_LOADER = "transformers:BertForSequenceClassification.from_pretrained"

GRID = ((1, 8), (1, 16), (4, 16))


def _plan(**overrides) -> MeasurePlan:
    values = dict(threads=1, max_length=32, latency_grid=GRID, warmup_runs=1, min_repeats=3, max_repeats=3,
                  point_budget_s=0.0, throughput_batch_sizes=(4, 8), throughput_tune_texts=8, throughput_cap_s=5.0,
                  rounds=1, timeout_s=120.0)
    values.update(overrides)
    return MeasurePlan(**values)


def test_each_kind_runs_in_its_own_process_and_computes_the_same_model(tiny_pair, texts, tmp_path):
    folder, checkpoint = tiny_pair
    specs = [
        ContenderSpec("torch", "torch", checkpoint, loader=TORCH_LOADER),
        ContenderSpec("variant", "variant", folder),
        ContenderSpec("ort-file", "onnxruntime", folder / "model.onnx"),
    ]
    ballast = np.ones(300 * 2**20, dtype=np.uint8)  # the parent holds 300 MB more; no worker may report it
    measured = runner.measure_contenders(specs, texts, _plan(), tmp_path)
    del ballast
    for name, entry in measured.contenders.items():
        assert entry["error"] is None, (name, entry["error"])
        assert set(entry["latency"]) == {"1x8", "1x16", "4x16"}
        assert all(p["p50"] > 0 and p["samples"] == 3 for p in entry["latency"].values()), name
        assert entry["throughput"]["texts_per_s"] > 0 and entry["throughput"]["batch_size"] in (4, 8)
        assert entry["cold_start_s"] > entry["load_s"] > 0
        assert entry["rss_first_answer_mb"] <= entry["peak_rss_mb"]
        wait_share = entry["contention"]["run_queue_wait_share"]
        assert wait_share is None or 0 <= wait_share <= 1
    assert measured.contenders["torch"]["torch_imported"] is True
    assert measured.contenders["variant"]["torch_imported"] is False
    assert measured.contenders["ort-file"]["torch_imported"] is False
    assert measured.contenders["variant"]["peak_rss_mb"] < 250  # an onnxruntime worker, not the 300 MB ballast
    reference = np.asarray(measured.contenders["torch"]["first_logits"])
    for name in ("variant", "ort-file"):
        np.testing.assert_allclose(measured.contenders[name]["first_logits"], reference, atol=1e-4)


def test_failures_are_results_and_the_others_are_still_measured(tiny_pair, texts, tmp_path):
    folder, _ = tiny_pair
    specs = [
        ContenderSpec("ok", "onnxruntime", folder / "model.onnx"),
        ContenderSpec("missing-file", "onnxruntime", tmp_path / "nope.onnx", tokenizer_dir=folder),
        ContenderSpec("bad-loader", "torch", folder, loader="no_such_module_xyz:load"),
    ]
    measured = runner.measure_contenders(specs, texts, _plan(rounds=2), tmp_path)
    assert measured.contenders["ok"]["error"] is None and len(measured.rounds["ok"]) == 2
    assert "does not exist" in measured.contenders["missing-file"]["error"]
    assert "No module named 'no_such_module_xyz'" in measured.contenders["bad-loader"]["error"]
    assert measured.rounds["missing-file"] == []  # a contender that never ran is not retried in later rounds


def test_rounds_rotate_and_reduce_to_medians(tiny_pair, texts, tmp_path):
    folder, _ = tiny_pair
    specs = [ContenderSpec("a", "onnxruntime", folder), ContenderSpec("b", "variant", folder)]
    plan = _plan(rounds=2, throughput_rounds="last", latency_grid=((1, 8),))
    measured = runner.measure_contenders(specs, texts, plan, tmp_path)
    assert measured.orders == [["a", "b"], ["b", "a"]]
    point = measured.contenders["a"]["latency"]["1x8"]
    assert len(point["rounds_p50"]) == 2 and point["p50"] == pytest.approx(float(np.median(point["rounds_p50"])))
    assert ["throughput" in r for r in measured.rounds["a"]] == [False, True]


def test_a_variant_that_is_not_batch_invariant_is_scored_one_text_at_a_time(tiny_pair, texts, tmp_path):
    folder = shutil.copytree(tiny_pair[0], tmp_path / "int8-like")
    (folder / "manifest.json").write_text(json.dumps({"batch_invariance": {"invariant": False}}), encoding="utf-8")
    measured = runner.measure_contenders([ContenderSpec("v", "variant", folder)], texts, _plan(), tmp_path / "work")
    throughput = measured.contenders["v"]["throughput"]
    assert throughput["batch_size"] == 1 and throughput["one_text_at_a_time"] is True


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_openvino_reports_the_precision_it_ran_at(tiny_pair, texts, tmp_path):
    folder, _ = tiny_pair
    spec = ContenderSpec("ov", "openvino", folder / "model.onnx", options={"precision": "f32"})
    measured = runner.measure_contenders([spec], texts, _plan(latency_grid=((1, 8),)), tmp_path)
    entry = measured.contenders["ov"]
    assert entry["error"] is None and entry["details"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert entry["torch_imported"] is False


def test_summarize_point_takes_the_median_of_each_rounds_percentiles():
    point = runner.summarize_point([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0], [2.0, 2.0, 2.0]])
    assert point["p50"] == 2.0 and point["rounds_p50"] == [2.0, 10.0, 2.0]
    assert point["samples"] == 9 and point["min"] == 1.0


def test_contender_names_must_be_unique(tmp_path):
    spec = ContenderSpec("x", "onnxruntime", tmp_path)
    with pytest.raises(ValueError, match="unique"):
        runner.measure_contenders([spec, spec], ["t"], _plan(), tmp_path)
