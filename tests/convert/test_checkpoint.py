"""Strict checkpoint loading: both key layouts, gamma/beta, and every way a checkpoint can be wrong."""

from __future__ import annotations

import json

import pytest
import torch

from structbert_lite.convert.checkpoint import load_classifier, remap_key, save_checkpoint
from structbert_lite.errors import CheckpointError
from tests.builders import TINY_VOCAB, tiny_model, write_tiny_checkpoint


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


@pytest.mark.parametrize(
    "key, expected",
    [
        ("head.classifier.weight", "classifier.weight"),
        ("encoder.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
        ("encoder.encoder.layer.3.output.dense.bias", "bert.encoder.layer.3.output.dense.bias"),
        ("encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.self.query.weight"),
        ("bert.embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight"),
        ("bert.encoder.layer.1.output.LayerNorm.beta", "bert.encoder.layer.1.output.LayerNorm.bias"),
        ("bert.pooler.dense.weight", "bert.pooler.dense.weight"),
        ("classifier.bias", "classifier.bias"),
    ],
)
def test_remap_key(key, expected):
    assert remap_key(key)[0] == expected


@pytest.mark.parametrize("layout", ["transformers", "modelscope"])
def test_both_layouts_load_to_identical_logits(tmp_path, layout):
    model = tiny_model(seed=3)
    save_checkpoint(model, TINY_VOCAB, tmp_path / layout, layout=layout)
    loaded = load_classifier(tmp_path / layout)
    ids = torch.randint(5, len(TINY_VOCAB), (3, 11))
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(model, ids), rtol=0, atol=0)
    assert loaded.id2label == {0: "负面", 1: "正面"}
    assert set(loaded.file_hashes) >= {"config.json", "pytorch_model.bin", "vocab.txt"}
    if layout == "modelscope":
        assert loaded.remapped["head.classifier.* -> classifier.*"] == 2


def test_gamma_beta_and_position_ids(tmp_path):
    model = tiny_model(seed=4)
    folder = save_checkpoint(model, TINY_VOCAB, tmp_path / "old")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    old = {}
    for key, value in state.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old[key] = value
    old["bert.embeddings.position_ids"] = torch.arange(256).unsqueeze(0)
    torch.save(old, folder / "pytorch_model.bin")
    loaded = load_classifier(folder)
    ids = torch.randint(5, len(TINY_VOCAB), (2, 9))
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(model, ids), rtol=0, atol=0)


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model(seed=5)
    folder = save_checkpoint(model, TINY_VOCAB, tmp_path / "st")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    (folder / "pytorch_model.bin").unlink()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    loaded = load_classifier(folder)
    assert loaded.weights_file == "model.safetensors"


def _edit_state(folder, edit):
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    edit(state)
    torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda f: _edit_state(f, lambda s: s.pop("head.classifier.weight")), "missing tensors: classifier.weight"),
        (lambda f: _edit_state(f, lambda s: s.update({"head.extra.weight": torch.zeros(2)})), "unexpected tensors: head.extra.weight"),
        (lambda f: _edit_state(f, lambda s: s.update({"head.classifier.weight": torch.zeros(3, 32)})), "has shape (3, 32)"),
        (
            lambda f: (f / "pytorch_model.bin").write_bytes((f / "pytorch_model.bin").read_bytes()[:5000]),
            "truncated or corrupt",
        ),
        (lambda f: (f / "pytorch_model.bin").unlink(), "has no weights"),
        (lambda f: (f / "config.json").unlink(), "has no config.json"),
        (lambda f: (f / "config.json").write_text("{not json"), "is not valid JSON"),
        (lambda f: (f / "config.json").write_text(json.dumps({"vocab_size": 10})), "lacks 'hidden_size'"),
    ],
    ids=["missing-classifier", "extra-tensor", "wrong-shape", "truncated-bin", "no-weights", "no-config", "bad-config", "not-bert"],
)
def test_bad_checkpoints_get_clear_errors(tmp_path, break_it, message):
    folder = write_tiny_checkpoint(tmp_path / "bad", layout="modelscope")
    break_it(folder)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_classifier(folder)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that needs arbitrary unpickling is an error, not code execution."""
    folder = write_tiny_checkpoint(tmp_path / "evil")

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_classifier(folder)


def test_no_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope")
