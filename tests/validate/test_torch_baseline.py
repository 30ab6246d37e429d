"""The PyTorch baseline matches the exported ONNX graph, and batching does not change results."""

from __future__ import annotations

import numpy as np

from structbert_lite.runtime import OnnxClassifier
from structbert_lite.validate.torch_baseline import TorchClassifier, load_baseline_model, resolve_loader

LOADER = "transformers:BertForSequenceClassification.from_pretrained"


def test_torch_and_onnx_agree(tiny_model, tiny_variant_master, eval_texts):
    texts, _ = eval_texts
    torch_logits = TorchClassifier(tiny_model, tiny_variant_master, max_length=32, threads=1).logits(texts, 4)
    onnx_logits = OnnxClassifier(tiny_variant_master, max_length=32, threads=1).logits(texts, 4)
    np.testing.assert_allclose(torch_logits, onnx_logits, atol=1e-4)


def test_batched_equals_single(tiny_model, tiny_variant_master, eval_texts):
    texts, _ = eval_texts
    clf = TorchClassifier(tiny_model, tiny_variant_master, max_length=32, threads=1)
    batched = clf.logits(texts, batch_size=8)
    single = np.concatenate([clf.logits([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert clf.labels == ["Negative", "Positive"]


def test_loader_spec(tiny_checkpoint):
    from transformers import BertForSequenceClassification

    assert resolve_loader(LOADER) == BertForSequenceClassification.from_pretrained
    model = load_baseline_model(tiny_checkpoint, LOADER)
    assert not model.training
