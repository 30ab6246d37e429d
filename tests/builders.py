"""Shared builders: tiny StructBERT-shaped checkpoints written by the tests themselves (no network)."""

from __future__ import annotations

import ast
import socket
import time
from pathlib import Path

import yaml

from structbert_lite.constants import SPECIAL_TOKENS
from structbert_lite.parity import PARITY_SENTENCES

TINY_VOCAB = list(SPECIAL_TOKENS) + sorted(
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


def center_classifier(model, texts: list[str], scale: float = 20.0):
    """Shift the classifier bias so the model splits ``texts`` about evenly between its two labels (a random
    tiny model otherwise answers one label for everything)."""
    import torch
    from tokenizers.implementations import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer({t: i for i, t in enumerate(TINY_VOCAB)}, lowercase=True)
    tokenizer.enable_padding(pad_id=0)
    tokenizer.enable_truncation(max_length=128)
    ids = torch.tensor([e.ids for e in tokenizer.encode_batch(list(texts))])
    with torch.no_grad():
        model.classifier.weight.mul_(scale)  # wide margins: int8 noise must not decide the tiny model's labels
        logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
        diffs = torch.unique(logits[:, 1] - logits[:, 0])  # sorted; duplicates of a text collapse
        middle = len(diffs) // 2
        # the boundary halfway between two distinct answers: no text sits on it
        boundary = (diffs[middle - 1] + diffs[middle]) / 2 if len(diffs) > 1 else diffs[0]
        model.classifier.bias[1] -= float(boundary)
    return model


def write_tiny_checkpoint(out_dir: Path, layout: str = "transformers", center_on: list[str] | None = None,
                          **kwargs) -> Path:
    from structbert_lite.convert.checkpoint import save_checkpoint

    model = tiny_model(**kwargs)
    if center_on:
        center_classifier(model, center_on)
    return save_checkpoint(model, TINY_VOCAB, out_dir, layout=layout)


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


def step_context(work: Path, loaded, name: str = "", texts=None, labels=None, threads: int = 1, max_length: int = 128):
    """A `StepContext` for running steps in tests the way the pipeline does (tokenizer files from the checkpoint)."""
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files
    from structbert_lite.steps import StepContext

    work = Path(work)
    tokenizer_dir = work / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        write_tokenizer_files(Path(loaded.checkpoint_dir) / "vocab.txt", tokenizer_dir, max_length)
    return StepContext(
        name=name, work_dir=work / (name or "step"), threads=threads, max_length=max_length,
        tokenizer_dir=tokenizer_dir, source=loaded, calibration_texts=list(texts or []), calibration_labels=labels,
    )


def run_steps(work: Path, loaded, chain: list[tuple[str, str, dict]], texts=None, labels=None) -> dict:
    """Run ``[(variant name, step, options)]`` as a linear chain from the source checkpoint; {name: Artifact}."""
    import dataclasses

    from structbert_lite.artifact import Artifact
    from structbert_lite.steps import run_step, step_options

    base = step_context(work, loaded, texts=texts, labels=labels)
    parent = Artifact(Path(loaded.checkpoint_dir), "source", {}, format="checkpoint")
    built = {}
    for name, step, options in chain:
        ctx = dataclasses.replace(base, name=name, work_dir=Path(work) / name, artifacts=built)
        parent = built[name] = run_step(step, parent, step_options(step, options, name), ctx)
    return built


def self_labels(checkpoint_dir: Path, texts: list[str], max_length: int = 128) -> list[str]:
    """The checkpoint's own FP32 answers as label *names* (负面/正面): an eval set a random tiny model scores
    100% on, so the baseline's sanity bounds pass, and a checkpoint with swapped labels scores 0%."""
    import tempfile

    from structbert_lite.convert.checkpoint import load_classifier
    from structbert_lite.convert.export_onnx import torch_logits
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files
    from structbert_lite.runtime import encode, load_tokenizer

    loaded = load_classifier(checkpoint_dir)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(Path(checkpoint_dir) / "vocab.txt", Path(tmp), max_length)
        tokenizer = load_tokenizer(Path(tmp), max_length)
        ids = [int(torch_logits(loaded.model, encode(tokenizer, [t])).argmax(-1)[0]) for t in texts]
    return [loaded.id2label[i] for i in ids]


def write_eval_csv(path: Path, texts: list[str], labels: list) -> Path:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


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
LABEL_PLACES = ("label_mapping", "model.label2id", "model.id2label", "preprocessor.label2id", "config.id2label",
                "config.label2id")


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
    for name, content in (("config.json", config), ("configuration.json", configuration)):
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    if weights == "model.safetensors":
        from safetensors.torch import save_file

        state = torch.load(folder / "pytorch_model.bin", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
        (folder / "pytorch_model.bin").unlink()
    elif weights != "pytorch_model.bin":
        raise ValueError(f"weights must be pytorch_model.bin or model.safetensors, not {weights!r}")
    return folder


def imported_modules(path: Path) -> set[str]:
    """Every absolute import in a source file, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def fast_validate(**overrides) -> dict:
    """The quickest `validate:` block a pipeline test can run (one thread, one attempt, a 1x16 speed point)."""
    block = {
        "threads": 1, "max_attempts": 1, "speedup_point": [1, 16], "batch_invariance_rows": 8,
        "latency": {"batch_sizes": [1], "seq_lengths": [16], "warmup": 1, "repeats": 2, "rounds": 1},
        "throughput_rows": 16,
    }
    return {**block, **overrides}


def write_config(path: Path, config: dict) -> str:
    """``config`` as a pipeline YAML at ``path``; returns the path as the CLI takes it."""
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return str(path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_file(path: Path, worker, what: str, poll_s: float, timeout_s: float = 180.0) -> None:
    """Until ``path`` exists; the ``worker`` process exiting first, or ``timeout_s`` passing, fails the test."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if worker.poll() is not None:
            raise AssertionError(f"worker exited early ({worker.returncode}): {worker.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"worker did not {what} in time"
        time.sleep(poll_s)
