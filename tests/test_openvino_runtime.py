"""OpenVinoClassifier: the OpenVINO engine behind runtime's API, on a tiny FP32 IR converted from the export."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from structbert_lite.errors import ArtifactError, ModelFileError
from structbert_lite.openvino_runtime import MODEL_BIN, MODEL_XML, OpenVinoClassifier, compile_config
from structbert_lite.parity import PARITY_SENTENCES, parity_texts
from structbert_lite.runtime import OnnxClassifier, encode, engine_class, open_variant, variant_engine
from tests.builders import TINY_VOCAB, export_variant, tiny_model

ov = pytest.importorskip("openvino")
TEXTS = [s[i:] + s[:i] for s in PARITY_SENTENCES for i in range(0, 12, 3)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(onnx folder, openvino folder): the same tiny model exported, then converted to an FP32 IR."""
    root = tmp_path_factory.mktemp("ovrt")
    onnx_dir = export_variant(tiny_model(layers=2, hidden=32, heads=2, seed=5), root / "onnx", TINY_VOCAB)
    ov_dir = root / "ov"
    ov_dir.mkdir()
    for path in onnx_dir.iterdir():
        if path.name != "model.onnx":
            shutil.copyfile(path, ov_dir / path.name)
    ov.save_model(ov.convert_model(str(onnx_dir / "model.onnx")), str(ov_dir / MODEL_XML), compress_to_fp16=False)
    return onnx_dir, ov_dir


def test_same_answers_as_onnxruntime(folders):
    onnx_dir, ov_dir = folders
    classifier = OpenVinoClassifier(ov_dir, threads=1, precision="f32")
    assert classifier.engine == "openvino" and classifier.labels == ["Negative", "Positive"]
    assert classifier.inference_precision == "f32"
    np.testing.assert_allclose(classifier.logits(TEXTS), OnnxClassifier(onnx_dir).logits(TEXTS), atol=1e-4)
    answers = classifier.predict(TEXTS[:3])
    assert [set(a) for a in answers] == [{"label", "score"}] * 3 and all(0.5 <= a["score"] <= 1 for a in answers)


def test_dynamic_shapes_and_padding(folders):
    """Any (batch, seq) runs on the one compiled model; a padded text scores as it does alone."""
    _, ov_dir = folders
    classifier = OpenVinoClassifier(ov_dir, threads=1, precision="f32")
    for batch, chars in [(1, 5), (3, 40), (1, 200), (7, 17), (2, 5)]:
        texts = parity_texts(batch, chars)
        batched = classifier.logits_for_encoding(encode(classifier.tokenizer, texts))
        assert batched.shape == (batch, 2)
        alone = np.concatenate([classifier.logits_for_encoding(encode(classifier.tokenizer, [t])) for t in texts])
        np.testing.assert_allclose(batched, alone, atol=1e-5)
    long_feed = encode(classifier.tokenizer, ["好" * 1000])
    assert long_feed["input_ids"].shape == (1, 128)  # truncated to max_length, as served


def test_open_variant_picks_openvino(folders, tmp_path):
    _, ov_dir = folders
    assert variant_engine(ov_dir) == "openvino"  # openvino_model.xml, no model.onnx, no manifest
    assert engine_class("openvino") is OpenVinoClassifier
    classifier = open_variant(ov_dir, threads=1)
    assert isinstance(classifier, OpenVinoClassifier) and classifier.batch_invariant and classifier.max_length == 128
    named = tmp_path / "named"
    shutil.copytree(ov_dir, named)
    (named / "manifest.json").write_text(json.dumps({"engine": "openvino", "config": {"model": {"max_length": 16}}}))
    assert open_variant(named).max_length == 16


def test_manifest_precision_is_applied_and_a_different_one_warned(folders, tmp_path, caplog):
    _, ov_dir = folders
    folder = tmp_path / "v"
    shutil.copytree(ov_dir, folder)
    (folder / "manifest.json").write_text(
        json.dumps({"openvino": {"precision_hint": "f32", "inference_precision": "f32"}}))
    with caplog.at_level(logging.WARNING, logger="structbert_lite.openvino_runtime"):
        assert OpenVinoClassifier(folder).inference_precision == "f32"
    assert not caplog.records
    default = OpenVinoClassifier(ov_dir).inference_precision  # this CPU's default: f32, or bf16 with BF16/AMX
    other = "f16" if default != "f16" else "f32"
    (folder / "manifest.json").write_text(json.dumps({"openvino": {"inference_precision": other}}))
    with caplog.at_level(logging.WARNING, logger="structbert_lite.openvino_runtime"):
        OpenVinoClassifier(folder)
    assert f"was gated running at {other} but this CPU runs it at {default}" in caplog.text


def test_compile_config():
    assert compile_config(None, None) == {"PERFORMANCE_HINT": "LATENCY"}
    assert compile_config(2, "f32") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2,
                                        "INFERENCE_PRECISION_HINT": "f32"}
    with pytest.raises(ArtifactError, match="precision must be one of"):
        OpenVinoClassifier("/nonexistent", precision="int3")


@pytest.mark.parametrize("damage", ["missing bin", "missing xml", "truncated bin", "garbage xml"])
def test_broken_ir_is_one_clear_line(folders, tmp_path, damage):
    _, ov_dir = folders
    folder = tmp_path / "broken"
    shutil.copytree(ov_dir, folder)
    (folder / "manifest.json").write_text(json.dumps({"engine": "openvino"}))  # as published
    if damage == "missing bin":
        (folder / MODEL_BIN).unlink()
    elif damage == "missing xml":
        (folder / MODEL_XML).unlink()
    elif damage == "truncated bin":
        data = (folder / MODEL_BIN).read_bytes()
        (folder / MODEL_BIN).write_bytes(data[: len(data) // 3])
    else:
        (folder / MODEL_XML).write_text("<net><layers>not a model")
    with pytest.raises(ModelFileError) as info:
        open_variant(folder)
    message = str(info.value)
    assert "\n" not in message
    if damage.startswith("missing"):
        name = MODEL_BIN if damage == "missing bin" else MODEL_XML
        assert f"{name} is missing" in message
    else:
        assert "truncated or corrupt" in message


def test_serving_path_imports_neither_torch_nor_transformers(folders):
    _, ov_dir = folders
    code = (
        "import sys; from structbert_lite.runtime import open_variant; "
        f"c = open_variant({str(ov_dir)!r}, threads=1); print(c.predict(['质量很好'])[0]['label']); "
        "bad = [m for m in ('torch', 'transformers', 'nncf', 'onnx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in ("Negative", "Positive")
