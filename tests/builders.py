"""Shared builders: tiny StructBERT-shaped checkpoints written by the tests themselves (no network)."""

from __future__ import annotations

from pathlib import Path

from structbert_lite.convert.export_onnx import PARITY_SENTENCES

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
    set("".join(PARITY_SENTENCES) + "好差烂棒喜欢讨厌满意失望的了是不很")
    - {" "}
)


def tiny_model(layers: int = 2, hidden: int = 32, heads: int = 2, seed: int = 0, vocab_size: int | None = None):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size or len(TINY_VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=256,
        num_labels=2,
        id2label={0: "负面", 1: "正面"},
        label2id={"负面": 0, "正面": 1},
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # a classifier with real signal, so labels are not all equal
        model.classifier.weight.normal_(0, 1.0)
    return model


def write_tiny_checkpoint(out_dir: Path, layout: str = "transformers", **kwargs) -> Path:
    from structbert_lite.convert.checkpoint import save_checkpoint

    return save_checkpoint(tiny_model(**kwargs), TINY_VOCAB, out_dir, layout=layout)


def export_variant(model, folder: Path, vocab: list[str], max_length: int = 128) -> Path:
    """A variant folder (model.onnx, config.json, tokenizer files) made by the toolkit's own exporter.

    No manifest or model card: those are written at publish time (``artifact.write_manifest``).
    """
    from structbert_lite.convert.export_onnx import export_onnx, write_model_config
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    write_tokenizer_files(folder / "vocab.txt", folder, max_length)
    export_onnx(model, folder / "model.onnx", opset=17)
    write_model_config(model, folder)
    return folder
