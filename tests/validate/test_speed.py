"""Speed and memory measurement on the tiny model (small grids: these are plumbing tests, not benchmarks)."""

from __future__ import annotations

import pytest

from structbert_lite.config import LatencyConfig
from structbert_lite.runtime import OnnxClassifier, load_tokenizer
from structbert_lite.validate import speed
from structbert_lite.validate.torch_baseline import TorchClassifier

LOADER = "transformers:BertForSequenceClassification.from_pretrained"


def test_synthetic_feed_has_exact_length_and_valid_ids(tiny_variant_master):
    tokenizer = load_tokenizer(tiny_variant_master, 32)
    feed = speed.synthetic_feed(tokenizer, 3, 16)
    ids = feed["input_ids"]
    assert ids.shape == (3, 16) and feed["attention_mask"].all() and not feed["token_type_ids"].any()
    assert (ids[:, 0] == tokenizer.token_to_id("[CLS]")).all() and (ids[:, -1] == tokenizer.token_to_id("[SEP]")).all()
    middle = ids[:, 1:-1]
    assert middle.min() >= 5 and middle.max() < tokenizer.get_vocab_size()  # no [PAD]/[UNK]/... inside


def test_latency_grid_throughput_and_speedup(tiny_model, tiny_variant_master, eval_texts):
    texts, _ = eval_texts
    contenders = {
        "torch": TorchClassifier(tiny_model, tiny_variant_master, 32, threads=1),
        "onnx": OnnxClassifier(tiny_variant_master, 32, threads=1),
    }
    cfg = LatencyConfig(batch_sizes=[1, 2], seq_lengths=[8], warmup=1, repeats=3, rounds=2)
    latency = speed.measure_latency(contenders, contenders["onnx"].tokenizer, cfg, extra_points=[(1, 16)])
    assert set(latency["onnx"]) == {"1x8", "2x8", "1x16"}
    stats = latency["torch"]["1x16"]
    assert stats["samples"] == 6 and 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
    assert speed.speedup(latency, "torch", "onnx", (1, 16)) > 0

    feeds = speed.bucket_feeds(contenders["onnx"].tokenizer, texts, 5)
    assert [len(f["input_ids"]) for f in feeds] == [5, 5, 2]
    widths = [f["input_ids"].shape[1] for f in feeds]
    assert widths == sorted(widths)  # length-sorted buckets: padding grows batch by batch
    throughput = speed.measure_throughput(contenders, feeds, rounds=1)
    assert all(v > 0 for v in throughput.values())


def test_sizes(tiny_model, tiny_variant_master):
    assert speed.onnx_size_bytes(tiny_variant_master) == (tiny_variant_master / "model.onnx").stat().st_size
    n_params = sum(p.numel() for p in tiny_model.parameters())
    assert speed.torch_size_bytes(tiny_model) >= 4 * n_params


def test_process_probe_onnx_loads_without_torch(tiny_variant_master, eval_texts):
    import numpy as np

    ballast = np.ones(400 * 2**20, dtype=np.uint8)  # the parent holds 400 MB; the probe must not report it
    result = speed.measure_process("onnx", tiny_variant_master, eval_texts[0][:2], max_length=32, threads=1)
    del ballast
    assert result["torch_imported"] is False
    assert 10 < result["peak_rss_mb"] < 300
    assert result["cold_start_s"] > result["load_s"] > 0


def test_process_probe_torch_with_a_loader(tiny_checkpoint, eval_texts):
    result = speed.measure_process("torch", tiny_checkpoint, eval_texts[0][:2], 32, 1, loader=LOADER)
    assert result["torch_imported"] is True and result["peak_rss_mb"] > 50


def test_process_probe_failure_is_reported(tmp_path):
    with pytest.raises(speed.MeasurementError, match="memory probe .* failed"):
        speed.measure_process("onnx", tmp_path, ["x"])
