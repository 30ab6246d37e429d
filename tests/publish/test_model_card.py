"""The model card: Hub metadata that huggingface_hub parses, the labels and runtimes it states, and an example that
runs with onnxruntime + tokenizers only, from any working directory."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from structbert_lite.publish.model_card import render_model_card, write_model_card

METRICS = {"accuracy": 0.91, "accuracy_drop": 0.2, "agreement": 0.995, "max_abs_logit_diff": 0.01, "speedup": 2.1,
           "size_bytes": 12 * 1024 * 1024,
           "latency_ms": {"batch": 1, "seq_len": 32, "p50": 3.2, "p95": 4.0, "p99": 5.0},
           "peak_rss_mb": 150.0}
GATE = {"passed": True, "checks": [{"name": "min_agreement", "value": 0.995, "limit": 0.99, "passed": True}]}
INT8_META = {"engine": "onnxruntime", "quantization": {"tool": "onnxruntime.quantization.quantize_dynamic"}}


def card(**overrides) -> dict:
    data = {"name": "tiny", "variant": "int8-dynamic", "metrics": METRICS, "gate": GATE,
            "source": {"kind": "modelscope", "id": "damo/nlp_structbert_sentiment-classification_chinese-base",
                       "revision": "v1.0.1"},
            "max_length": 32, "meta": INT8_META, "baseline_metrics": {"accuracy": 0.912}, "eval": {"source": "heldout"},
            "license": "apache-2.0", "speed_verified": True,
            "batch_invariance": {"invariant": False, "max_abs_score_diff": 3.3e-3}}
    return {**data, **overrides}


def extract_python(readme: str) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    return code


def test_card_metadata_parses_with_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard

    path = write_model_card(tmp_path, card())
    parsed = ModelCard.load(path)
    meta = parsed.data.to_dict()
    assert meta["library_name"] == "onnxruntime" and meta["pipeline_tag"] == "text-classification"
    assert meta["language"] == ["zh"] and meta["license"] == "apache-2.0"
    assert meta["base_model"] == "damo/nlp_structbert_sentiment-classification_chinese-base"
    assert {"structbert", "onnx", "int8"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in results} == {"accuracy": 0.91, "agreement": 0.995}


def test_card_front_matter_round_trips_through_huggingface_hub(tmp_path):
    """The whole front matter, parsed back by ModelCard.load, in the key order the cards have always had."""
    from huggingface_hub import ModelCard

    text = write_model_card(tmp_path, card()).read_text(encoding="utf-8")
    parsed = ModelCard.load(tmp_path / "README.md")
    assert parsed.data.to_dict() == {
        "library_name": "onnxruntime", "pipeline_tag": "text-classification", "language": ["zh"],
        "license": "apache-2.0",
        "tags": ["structbert", "bert", "sentiment-analysis", "chinese", "structbert-lite", "int8-dynamic", "onnx",
                 "int8"],
        "base_model": "damo/nlp_structbert_sentiment-classification_chinese-base",
        "model-index": [{"name": "tiny-int8-dynamic", "results": [{
            "task": {"type": "text-classification", "name": "Sentiment classification"},
            "dataset": {"name": "heldout", "type": "text-classification"},
            "metrics": [{"type": "accuracy", "value": 0.91, "name": "Accuracy"},
                        {"type": "agreement", "value": 0.995, "name": "Label agreement with PyTorch FP32"}]}]}],
    }
    assert list(yaml.safe_load(text.split("---")[1])) == [
        "library_name", "pipeline_tag", "language", "license", "tags", "base_model", "model-index"]
    assert parsed.text.startswith("\n# tiny — int8-dynamic\n") and str(parsed) == text


def test_card_states_labels_runtimes_and_batching():
    text = render_model_card(card())
    assert "负面 / 正面" in text and "Negative / Positive" in text
    assert "onnxruntime only" in text and "QAttention" in text  # OpenVINO rejects the int8 contrib ops
    assert "one text at a time" in text
    assert "demo" not in text.split("---")[1]  # metadata of a hub source


def test_unverified_speed_is_not_published_as_a_number():
    gate = {"passed": True, "checks": [{"name": "min_speedup", "value": 888.0, "limit": 2.5, "passed": True,
                                        "verified": False}]}
    text = render_model_card(card(gate=gate, metrics={**METRICS, "speedup": 888.0}, speed_verified=False))
    assert "| speedup vs PyTorch FP32 | not verified" in text and "888.00 |" not in text
    assert "not verified" in text.split("Gate:")[1]


@pytest.mark.parametrize("invariant", [True, False])
def test_model_card_example_runs_from_anywhere(variant_folder, tmp_path, invariant):
    meta = INT8_META if not invariant else {"engine": "onnxruntime", "export": {}}
    path = write_model_card(variant_folder, card(variant="fp32", meta=meta,
                                                 batch_invariance={"invariant": invariant, "max_abs_score_diff": 0.0}))
    code = extract_python(path.read_text(encoding="utf-8"))
    script = tmp_path / "example.py"
    script.write_text("import sys\nsys.modules['torch'] = None\nsys.modules['transformers'] = None\n" + code)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, str(script), str(variant_folder)], capture_output=True, text=True,
                         timeout=120, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split()[1] in ("负面", "正面") for line in lines)
    missing = subprocess.run([sys.executable, str(script), str(elsewhere)], capture_output=True, text=True,
                             timeout=120, cwd=elsewhere)
    assert missing.returncode == 1 and f"{elsewhere}/model.onnx not found" in missing.stderr


def test_a_checkpoint_variant_card_runs_with_transformers(tmp_path):
    """A published student checkpoint (ModelScope layout) loads with plain transformers, from anywhere."""
    from tests.builders import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / "student")
    path = write_model_card(folder, card(variant="student", meta={"distill": {}}, format="checkpoint",
                                         batch_invariance={"invariant": True, "max_abs_score_diff": 0.0}))
    text = path.read_text(encoding="utf-8")
    assert "library_name: transformers" in text and "structbert-lite finetune --model" in text
    script = tmp_path / "example.py"
    script.write_text(extract_python(text))
    out = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert all(line.split()[1] in ("负面", "正面") for line in out.stdout.strip().splitlines())


@pytest.mark.parametrize("fmt, remove, message", [
    ("onnx", "model.onnx", "required file: model.onnx"),
    ("checkpoint", "pytorch_model.bin", "no weights"),
    ("checkpoint", "vocab.txt", "required file: vocab.txt"),
])
def test_verify_knows_what_each_format_needs(tmp_path, variant_folder, fmt, remove, message):
    from structbert_lite.artifact import verify_folder, write_manifest
    from tests.builders import write_tiny_checkpoint

    folder = variant_folder if fmt == "onnx" else write_tiny_checkpoint(tmp_path / "ckpt")
    (folder / "README.md").write_text("# card\n")
    write_manifest(folder, {"format": fmt})
    assert verify_folder(folder) == []
    (folder / remove).unlink()
    write_manifest(folder, {"format": fmt})
    assert any(message in p for p in verify_folder(folder))
