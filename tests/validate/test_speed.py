"""validate's speed and memory through the measurement core, on the tiny model (plumbing, not benchmarks)."""

from __future__ import annotations

import pytest

from structbert_lite.config import LatencyConfig, ValidateConfig
from structbert_lite.measure.contenders import ContenderSpec
from structbert_lite.validate import speed

LOADER = "transformers:BertForSequenceClassification.from_pretrained"


def _vcfg(**overrides):
    vcfg = ValidateConfig(
        threads=1, latency=LatencyConfig(batch_sizes=[1, 2], seq_lengths=[8], warmup=1, repeats=3, rounds=1),
        throughput_batch_size=4, speedup_point=(1, 16),
    )
    return vcfg.model_copy(update={"max_attempts": 1, **overrides})  # one attempt: a busy CI machine must not slow this


def test_measure_variants_gives_every_metric_and_a_trust_record(tiny_checkpoint, tiny_variant_master, eval_texts,
                                                                 tmp_path):
    texts, _ = eval_texts
    baseline = ContenderSpec("pytorch-fp32", "torch", tiny_checkpoint, tiny_variant_master, LOADER)
    variants = [ContenderSpec("fp32", "variant", tiny_variant_master),
                ContenderSpec("broken", "variant", tmp_path / "missing", tokenizer_dir=tiny_variant_master)]
    result = speed.measure_variants(baseline, variants, texts, _vcfg(), max_length=32, work_dir=tmp_path / "work")

    assert set(result.contenders) == {"pytorch-fp32", "fp32", "broken"}
    for name in ("pytorch-fp32", "fp32"):
        metrics = result.metrics(name)
        assert set(speed.METRIC_KEYS) <= set(metrics) and metrics["error"] is None
        assert [(r["batch"], r["seq_len"]) for r in metrics["latency_grid"]] == [(1, 8), (1, 16), (2, 8)]
        assert all(r["samples"] == 3 and 0 < r["p50"] <= r["p95"] <= r["p99"] for r in metrics["latency_grid"])
        assert metrics["latency_ms"]["batch"] == 1 and metrics["latency_ms"]["seq_len"] == 16
        assert metrics["throughput_texts_per_s"] > 0 and metrics["throughput"]["batch_size"] == 4
        assert metrics["peak_rss_mb"] > 10 and metrics["cold_start_s"] > metrics["load_s"] > 0
    assert result.speedup("fp32") == pytest.approx(
        result.metrics("pytorch-fp32")["latency_ms"]["p50"] / result.metrics("fp32")["latency_ms"]["p50"]
    )
    broken = result.metrics("broken")
    assert broken["error"] and broken["latency_ms"] is None and broken["peak_rss_mb"] is None
    assert result.speedup("broken") is None

    trust = result.trust
    assert isinstance(trust["verified"], bool) and trust["attempts"] == 1
    assert {"reasons", "load_average", "rounds_spread", "baseline_p95_over_p50"} <= set(trust)
    assert trust["verified"] == (trust["reasons"] == [])
    assert "fresh process" in result.method and ("verified" in result.method)


def test_no_texts_is_a_clear_error(tiny_variant_master):
    spec = ContenderSpec("fp32", "variant", tiny_variant_master)
    with pytest.raises(speed.MeasurementError, match="no eval texts"):
        speed.measure_variants(spec, [], [], _vcfg(), max_length=32)


def test_plan_follows_the_config():
    plan = speed.plan_from_config(_vcfg(), max_length=64)
    assert plan.latency_grid == ((1, 8), (1, 16), (2, 8)) and plan.min_repeats == plan.max_repeats == 3
    assert plan.throughput_batch_sizes == (4,) and plan.rounds == 1 and plan.threads == 1 and plan.max_length == 64


def test_sizes(tiny_model, tiny_variant_master):
    assert speed.onnx_size_bytes(tiny_variant_master) == (tiny_variant_master / "model.onnx").stat().st_size
    n_params = sum(p.numel() for p in tiny_model.parameters())
    assert speed.torch_size_bytes(tiny_model) >= 4 * n_params
