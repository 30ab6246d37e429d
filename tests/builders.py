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


# The blocks of the real ModelScope repo damo/nlp_structbert_sentiment-classification_chinese-base
# (now iic/…): task, model (type + structbert backbone + head), preprocessor, pipeline. Sizes are the tiny
# model's; the loader reads the architecture from config.json and only the labels from here.
MODELSCOPE_CONFIGURATION = {
    "framework": "pytorch",
    "task": "text-classification",
    "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "first_sequence", "label": "label"},
    "model": {
        "type": "text-classification",
        "backbone": {"type": "structbert", "prefix": "encoder", "hidden_size": 32, "num_hidden_layers": 2},
        "head": {"type": "text-classification", "hidden_dropout_prob": 0.1, "hidden_size": 32},
    },
    "pipeline": {"type": "sentiment-classification"},
}
# Where a checkpoint may carry its label names (ModelScope reads them in this order; see convert/labels.py).
LABEL_PLACES = ("label_mapping", "model.label2id", "model.id2label", "preprocessor.label2id", "config.id2label", "config.label2id")


def write_modelscope_checkpoint(
    out_dir: Path,
    *,
    labels: tuple[str, ...] = ("label_mapping", "config.id2label", "config.label2id"),
    id2label: dict | None = None,
    model_type: str = "structbert",
    weights: str = "pytorch_model.bin",
    seed: int = 0,
    **model_kwargs,
) -> Path:
    """A tiny checkpoint in the real ModelScope repo layout: ``configuration.json`` with the real blocks,
    ``config.json`` with ``model_type`` (structbert or bert), weights named ``encoder.*``/``head.classifier.*``
    (``pytorch_model.bin`` or ``model.safetensors``), ``vocab.txt``, and the label names ``id2label``
    (default 0 = 负面, 1 = 正面) written in each place of ``labels`` (see `LABEL_PLACES`) and nowhere else.
    """
    import copy
    import json

    import torch

    from structbert_lite.constants import DEFAULT_ID2LABEL
    from structbert_lite.convert.checkpoint import save_checkpoint

    id2label = {int(k): v for k, v in (id2label or DEFAULT_ID2LABEL).items()}
    label2id = {v: k for k, v in id2label.items()}
    configuration = copy.deepcopy(MODELSCOPE_CONFIGURATION)
    folder = save_checkpoint(tiny_model(seed=seed, **model_kwargs), TINY_VOCAB, out_dir, layout="modelscope")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in ("id2label", "label2id", "architectures"):
        config.pop(key, None)
    config["model_type"] = model_type
    for place in labels:
        if place == "label_mapping":
            (folder / "label_mapping.json").write_text(json.dumps(label2id, ensure_ascii=False), encoding="utf-8")
        elif place.startswith("config."):
            key = place.split(".", 1)[1]
            config[key] = {str(k): v for k, v in id2label.items()} if key == "id2label" else label2id
        else:
            block, key = place.split(".")
            value = {str(k): v for k, v in id2label.items()} if key == "id2label" else label2id
            configuration[block][key] = value
    (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "configuration.json").write_text(json.dumps(configuration, indent=2, ensure_ascii=False), encoding="utf-8")
    if weights == "model.safetensors":
        from safetensors.torch import save_file

        state = torch.load(folder / "pytorch_model.bin", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
        (folder / "pytorch_model.bin").unlink()
    elif weights != "pytorch_model.bin":
        raise ValueError(f"weights must be pytorch_model.bin or model.safetensors, not {weights!r}")
    return folder
