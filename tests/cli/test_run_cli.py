"""`structbert-lite run` end to end on a tiny local checkpoint: publish, verify, and a gate that must fail."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from structbert_lite.artifact import verify_folder
from structbert_lite.cli import EXIT_GATE, main
from structbert_lite.convert.export_onnx import PARITY_SENTENCES

VARIANTS = ("fp32", "fp32-optimized", "int8-dynamic")


def tiny_config(tmp_path, int8_gate: dict) -> str:
    config = {
        "name": "tiny",
        "model": {"max_length": 64},
        "validate": {
            "latency": {"batch_sizes": [1], "seq_lengths": [16, 32], "warmup": 1, "repeats": 3, "rounds": 1},
            "throughput_rows": 32,
            "memory": True,
        },
        "quantize": {"fallback": {"calibration_rows": 32}},
        "gate": {"fp32": {"max_logit_diff": 0.001, "min_agreement": 0.999}, "int8-dynamic": int8_gate},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


@pytest.fixture
def eval_csv(tmp_path):
    path = tmp_path / "eval.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "sentiment"])
        for i, text in enumerate(PARITY_SENTENCES * 5):
            writer.writerow([text[i % 3 :], "正面" if i % 2 else "负面"])
    return str(path)


def test_run_publishes_verifiable_variants(tmp_path, tiny_checkpoint, eval_csv, capsys):
    out = tmp_path / "out"
    code = main([
        "run", "--config", tiny_config(tmp_path, {"max_accuracy_drop": 5, "max_size_mb": 5}),
        "--model", str(tiny_checkpoint), "--eval", eval_csv, "--out", str(out),
        "--text-column", "review", "--label-column", "sentiment", "--quiet",
    ])
    assert code == 0, capsys.readouterr().err
    for variant in VARIANTS:
        assert verify_folder(out / variant) == [], variant
        manifest = json.loads((out / variant / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["variant"] == variant and manifest["onnx_opset"] == 17
        assert manifest["source"]["kind"] == "local" and "pytorch_model.bin" in manifest["source"]["file_hashes"]
        assert manifest["config"]["name"] == "tiny" and manifest["versions"]["onnxruntime"]
    int8 = json.loads((out / "int8-dynamic" / "manifest.json").read_text(encoding="utf-8"))
    assert int8["quantization"]["isa"] and int8["quantization"]["required_cpu_flags"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["baseline"]["name"] == "pytorch-fp32"
    assert [v["name"] for v in report["variants"]] == list(VARIANTS)
    assert all(v["published"] and v["gate"]["passed"] for v in report["variants"])
    for v in report["variants"]:
        assert set(v["metrics"]) >= {"accuracy", "agreement", "max_abs_logit_diff", "speedup", "size_bytes", "latency_ms", "peak_rss_mb"}
    assert (out / "report.md").is_file() and not list(out.glob(".staging-*"))
    assert main(["verify", str(out)]) == 0


def test_failed_gate_publishes_nothing_that_failed(tmp_path, tiny_checkpoint, eval_csv, capsys):
    out = tmp_path / "out"
    code = main([
        "run", "--config", tiny_config(tmp_path, {"min_speedup": 1000.0}),
        "--model", str(tiny_checkpoint), "--eval", eval_csv, "--out", str(out),
        "--text-column", "review", "--label-column", "sentiment", "--quiet",
    ])
    assert code == EXIT_GATE
    assert "Gate failed" in capsys.readouterr().err
    assert not (out / "int8-dynamic").exists()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    int8 = next(v for v in report["variants"] if v["name"] == "int8-dynamic")
    assert not int8["published"] and not int8["gate"]["passed"]
    assert any(c["name"] == "min_speedup" and not c["passed"] for c in int8["gate"]["checks"])


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1, "vocab_size": 9}))
    assert main(["run", "--config", "configs/demo.yaml", "--model", str(empty), "--eval", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "has no weights" in capsys.readouterr().err
