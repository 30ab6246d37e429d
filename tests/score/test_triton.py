"""export-triton: a model repository whose config.pbtxt is a valid Triton ModelConfig matching the ONNX graph."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from structbert_lite.cli import main  # noqa: E402
from structbert_lite.runtime import encode, open_variant  # noqa: E402
from structbert_lite.score.triton import check_config, export_triton  # noqa: E402


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_triton_writes_a_valid_repository(fp32_variant, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["export-triton", "--artifact", str(fp32_variant), "--out", str(repo), "--name", "structbert",
                 "--max-batch-size", "16", "--instances", "2"]) == 0
    assert "tritonserver --model-repository" in capsys.readouterr().out
    model = repo / "structbert"
    files = sorted(p.relative_to(model).as_posix() for p in model.rglob("*"))
    assert files == ["1", "1/model.onnx", "config.pbtxt", "labels.txt"]
    assert _sha(model / "1" / "model.onnx") == _sha(fp32_variant / "model.onnx")
    assert (model / "labels.txt").read_text(encoding="utf-8").split() == ["Negative", "Positive"]
    text = (model / "config.pbtxt").read_text(encoding="utf-8")
    config = text_format.Parse(text, model_config_pb2.ModelConfig())  # Triton's own schema
    assert (config.name, config.backend, config.max_batch_size) == ("structbert", "onnxruntime", 16)
    assert {i.name: (model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input} == {
        "input_ids": ("TYPE_INT64", [-1]), "attention_mask": ("TYPE_INT64", [-1]),
        "token_type_ids": ("TYPE_INT64", [-1])}
    (output,) = config.output
    described = (output.name, model_config_pb2.DataType.Name(output.data_type), list(output.dims),
                 output.label_filename)
    assert described == ("logits", "TYPE_FP32", [2], "labels.txt")
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)]
    assert check_config(text, model / "1" / "model.onnx") == []
    # What Triton would run: the graph with a batch of token ids, as the config declares them.
    import onnxruntime as ort

    classifier = open_variant(fp32_variant, threads=1)
    feed = encode(classifier.tokenizer, ["很好", "太差了，不推荐"])
    session = ort.InferenceSession(str(model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run([output.name], {i.name: feed[i.name] for i in config.input})[0]
    assert logits.shape == (2, output.dims[0])
    assert np.allclose(logits, classifier.logits_for_encoding(feed), atol=1e-6)


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda t: t.replace('backend: "onnxruntime"', 'backend: "onnxruntime"\nmax_batch_sizes: 3'),
         "not a valid Triton ModelConfig"),
        (lambda t: t.replace("TYPE_INT64", "TYPE_INT32", 1), "is TYPE_INT32, the graph says TYPE_INT64"),
        (lambda t: t.replace('name: "logits"', 'name: "probs"'), "output 'probs' is not in the ONNX graph"),
        (lambda t: t.replace("dims: 2", "dims: 3"), "has dims [3], the graph has [2]"),
        (lambda t: t.replace("KIND_CPU", "KIND_TPU"), "not a valid Triton ModelConfig"),
    ],
)
def test_check_config_catches_what_triton_would_refuse(edit, problem, fp32_variant, tmp_path):
    model = export_triton(fp32_variant, tmp_path / "repo")
    text = (model / "config.pbtxt").read_text(encoding="utf-8")
    problems = check_config(edit(text), model / "1" / "model.onnx")
    assert any(problem in p for p in problems), problems


def test_a_variant_that_is_not_batch_invariant_is_never_batched(int8_variant, tmp_path):
    model = export_triton(int8_variant, tmp_path / "repo", max_batch_size=32)
    config = text_format.Parse((model / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    assert config.max_batch_size == 1 and not config.HasField("dynamic_batching")
