"""Tiny models and variant folders for the validate tests (no network, built in the test session).

A variant folder here looks like a published one minus manifest/README: ``model.onnx`` exported with the
TorchScript exporter (``dynamo=False``, opset 17), ``config.json`` with ``id2label`` {0: 负面, 1: 正面},
``tokenizer.json``, ``vocab.txt`` and ``tokenizer_config.json``. The vocab is one token per character.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("这家餐厅的菜很好吃质量太差了再也不买服务一般还可以非常满意失望喜欢讨厌快递慢东西不错真棒垃圾推荐")
ASCII = list("abcdefghijklmnopqrstuvwxyz0123456789")
POSITIVE_TEXTS = ["这家餐厅的菜很好吃", "非常满意", "东西不错真棒", "喜欢", "推荐这家", "服务很好"]
NEGATIVE_TEXTS = ["质量太差了再也不买", "失望", "快递慢", "垃圾", "讨厌这家", "服务一般"]
MAX_LENGTH = 32


def write_vocab(path: Path) -> list[str]:
    vocab = SPECIAL_TOKENS + CHARS + ASCII
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return vocab


def build_tiny_model(num_tokens: int, seed: int = 0):
    """A random tiny BertForSequenceClassification with 负面/正面 labels."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=num_tokens,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "负面", 1: "正面"},
        label2id={"负面": 0, "正面": 1},
    )
    model = BertForSequenceClassification(config).eval()
    # Random init gives near-identical logits; widen the head so labels actually differ between texts.
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    return model


def write_tokenizer_files(folder: Path) -> None:
    """The toolkit's own tokenizer files for the tiny vocabulary."""
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files as write_files

    folder.mkdir(parents=True, exist_ok=True)
    write_vocab(folder / "vocab.txt")
    write_files(folder / "vocab.txt", folder, 512)


def export_variant(model, folder: Path) -> Path:
    """Export ``model`` to ``folder`` with the toolkit's own exporter (TorchScript, dynamic batch/seq)."""
    from tests.builders import export_variant as export

    return export(model, folder, SPECIAL_TOKENS + CHARS + ASCII, max_length=512)


@pytest.fixture(scope="session")
def tiny_model():
    return build_tiny_model(len(dict.fromkeys(SPECIAL_TOKENS + CHARS + ASCII)))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """``save_pretrained`` checkpoint (+ tokenizer files) loadable by BertForSequenceClassification."""
    folder = tmp_path_factory.mktemp("checkpoint")
    tiny_model.save_pretrained(folder)
    write_tokenizer_files(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_variant_master(tiny_model, tmp_path_factory) -> Path:
    return export_variant(tiny_model, tmp_path_factory.mktemp("variant") / "fp32")


@pytest.fixture()
def tiny_variant(tiny_variant_master, tmp_path) -> Path:
    """A fresh, writable copy of the exported variant folder."""
    return Path(shutil.copytree(tiny_variant_master, tmp_path / "stage" / "fp32"))


@pytest.fixture(scope="session")
def eval_texts() -> tuple[list[str], list[int]]:
    texts = POSITIVE_TEXTS + NEGATIVE_TEXTS
    labels = [1] * len(POSITIVE_TEXTS) + [0] * len(NEGATIVE_TEXTS)
    return texts, labels
