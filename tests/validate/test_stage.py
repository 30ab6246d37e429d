"""The validate stage on a tiny chain built by the real steps: drift, batch invariance, the baseline's sanity,
length buckets, the gate against the baseline and the parent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from structbert_lite.artifact import Artifact
from structbert_lite.config import EvalConfig, PipelineConfig, parse_config
from structbert_lite.convert.checkpoint import load_classifier
from structbert_lite.errors import BaselineError
from structbert_lite.parity import PARITY_SENTENCES
from structbert_lite.validate import stage
from structbert_lite.validate.eval_data import build_eval_set
from tests.builders import run_steps, self_labels, write_tiny_checkpoint

TEXTS = [s[i:] + s[:i] for s in PARITY_SENTENCES for i in range(0, 12, 3)]  # 32 varied texts
TEXTS += ["".join(PARITY_SENTENCES) * 3]  # one text longer than 128 tokens
PERMISSIVE = {"max_accuracy_drop": 100.0, "min_agreement": 0.0, "max_logit_diff": 1e6, "max_size_mb": 100.0}
FAST_VALIDATE = {
    "threads": 1,
    "latency": {"batch_sizes": [1], "seq_lengths": [8, 16], "warmup": 1, "repeats": 2, "rounds": 1},
    "throughput_rows": 8,
    "throughput_batch_size": 4,
    "speedup_point": (1, 16),
    "max_attempts": 1,
    "batch_invariance_rows": 16,
}


def make_cfg(gates: dict | None = None) -> PipelineConfig:
    gates = gates or {}
    variants = [
        {"name": "fp32", "step": "export", "gate": gates.get("fp32", PERMISSIVE)},
        {"name": "fp32-optimized", "step": "fuse", "parent": "fp32", "gate": gates.get("fp32-optimized", PERMISSIVE)},
        {"name": "int8-dynamic", "step": "ort-dynamic-int8", "parent": "fp32-optimized",
         "options": {"fallback": {"enabled": False}}, "gate": gates.get("int8-dynamic", PERMISSIVE)},
    ]
    return parse_config({"name": "tiny", "variants": variants, "validate": FAST_VALIDATE})


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    work = tmp_path_factory.mktemp("chain")
    checkpoint = write_tiny_checkpoint(work / "ckpt", layout="modelscope", center_on=TEXTS, hidden=64, heads=2)
    loaded = load_classifier(checkpoint)
    built = run_steps(work, loaded, [
        ("fp32", "export", {}),
        ("fp32-optimized", "fuse", {}),
        ("int8-dynamic", "ort-dynamic-int8", {"fallback": {"enabled": False}}),
    ])
    for name, parent in (("fp32", "source"), ("fp32-optimized", "fp32"), ("int8-dynamic", "fp32-optimized")):
        built[name].meta["parent"] = parent
    names = self_labels(checkpoint, TEXTS)
    eval_set = build_eval_set(TEXTS, [{"负面": "negative", "正面": "positive"}[n] for n in names],
                              loaded.id2label, EvalConfig(min_accuracy=0.5), "self-labelled")
    return checkpoint, loaded, built, eval_set, work / "tokenizer"


def validate(chain, cfg, variants=None, failures=None, tmp_path=None):
    checkpoint, loaded, built, eval_set, tokenizer_dir = chain
    variants = [built[n] for n in (variants or ("fp32", "fp32-optimized", "int8-dynamic"))]
    source = Artifact(checkpoint, "source", {}, format="checkpoint")
    scored = stage.score_baseline(loaded.model, tokenizer_dir, eval_set, cfg, quiet=True)
    return stage.run(source, variants, failures or {}, eval_set, cfg, scored, tokenizer_dir, quiet=True,
                     work_dir=tmp_path)


@pytest.fixture(scope="module")
def validation(chain, tmp_path_factory):
    """One validation run (speed is measured in fresh processes: seconds each), shared by the tests below."""
    cfg = make_cfg({"int8-dynamic": {**PERMISSIVE, "min_speedup_vs_parent": 1000.0}})
    failures = {"student-int8": "step ort-dynamic-int8 failed: boom"}
    return validate(chain, cfg, failures=failures, tmp_path=tmp_path_factory.mktemp("speed"))


def test_every_variant_is_measured_and_gated(validation):
    assert [e["name"] for e in validation.entries] == ["fp32", "fp32-optimized", "int8-dynamic", "student-int8"]
    assert validation.entry("fp32")["gate"]["passed"] and validation.entry("fp32-optimized")["gate"]["passed"]
    base = validation.baseline_metrics
    assert base["accuracy"] == 1.0 and base["latency_ms"]["p50"] > 0
    fp32, fused, int8 = (validation.entry(n)["metrics"] for n in ("fp32", "fp32-optimized", "int8-dynamic"))
    assert fp32["agreement"] == 1.0 and fp32["max_abs_logit_diff"] < 1e-4
    assert fused["parent"] == "fp32" and fused["speedup_vs_parent"] > 0
    assert fp32["parent"] == "pytorch-fp32" and fp32["speedup_vs_parent"] == pytest.approx(fp32["speedup"])
    for m in (fp32, fused, int8):
        for key in ("accuracy", "agreement", "max_abs_logit_diff", "speedup", "size_bytes", "latency_ms",
                    "peak_rss_mb"):
            assert m[key] is not None, key
    report = validation.report
    assert report["settings"]["speed_method"] and "verified" in report["settings"]["speed_trust"]
    json.dumps(report)  # report.json must serialise


def test_batch_invariance_is_measured_per_variant(validation):
    fp32 = validation.entry("fp32")["batch_invariance"]
    int8 = validation.entry("int8-dynamic")["batch_invariance"]
    assert fp32["invariant"] and fp32["max_abs_score_diff"] < 1e-5 and fp32["label_flips"] == 0
    assert int8["rows"] == 16 and int8["max_abs_score_diff"] > fp32["max_abs_score_diff"]


def test_length_buckets_count_truncated_texts(validation):
    buckets = validation.report["length_buckets"]
    assert buckets["truncated_rows"] == 1 and buckets["max_length"] == 128
    rows = {b["bucket"]: b["rows"] for b in buckets["buckets"]}
    assert sum(rows.values()) == len(TEXTS) and rows[">256"] == 1
    assert buckets["truncation"]["rows"] == 1 and set(buckets["truncation"]) == {"rows", "head", "head+tail"}


def test_gate_compares_with_the_parent(validation):
    entry = validation.entry("int8-dynamic")
    check = next(c for c in entry["gate"]["checks"] if c["name"] == "min_speedup_vs_parent")
    assert check["value"] < 1000.0
    if validation.speed_verified:
        assert not entry["gate"]["passed"]
    else:  # a busy machine: the speed check is reported, marked not verified, and does not decide
        assert check["verified"] is False and check["measured_pass"] is False and entry["gate"]["passed"]


def test_a_failed_step_is_reported_not_published(validation):
    entry = validation.entry("student-int8")
    assert not entry["gate"]["passed"] and "boom" in entry["gate"]["checks"][0]["detail"]


def test_swapped_labels_stop_the_run_before_any_step_runs(chain, tmp_path):
    checkpoint, loaded, built, eval_set, tokenizer_dir = chain
    swapped = Path(shutil.copytree(checkpoint, tmp_path / "swapped"))
    config = json.loads((swapped / "config.json").read_text(encoding="utf-8"))
    config["id2label"] = {"0": "正面", "1": "负面"}
    config["label2id"] = {"正面": 0, "负面": 1}
    (swapped / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    bad = load_classifier(swapped)
    polarities = ["positive" if n == 1 else "negative" for n in eval_set.labels]  # the truth, by meaning
    bad_eval = build_eval_set(TEXTS, polarities, bad.id2label, EvalConfig(), "self-labelled")
    with pytest.raises(BaselineError, match=r"scores 0\.0% .*no better than chance.*labels"):
        stage.score_baseline(bad.model, tokenizer_dir, bad_eval, make_cfg(), quiet=True)
