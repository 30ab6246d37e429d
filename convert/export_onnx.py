"""Step ``export``: PyTorch checkpoint → ONNX FP32, with a blocking parity check.

We use the TorchScript exporter (``dynamo=False``): with torch 2.13 the dynamo exporter emits attention in
a form onnxruntime's transformer optimizer does not fuse (no ``Attention``/``EmbedLayerNormalization``),
which silently costs most of the int8 speed later (DESIGN.md, "Exporter choice decides the fusions").
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from structbert_lite.artifact import Artifact, copy_companions
from structbert_lite.config import MAX_POSITIONS, Int
from structbert_lite.errors import ParityError
from structbert_lite.parity import check_parity
from structbert_lite.runtime import INPUT_NAMES, create_session
from structbert_lite.steps import StepContext, StepOptions

logger = logging.getLogger(__name__)

def torch_logits(model, feed: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return out.logits.float().numpy()


def export_onnx(model, path: Path, opset: int) -> None:
    """TorchScript export with dynamic batch and sequence axes; inputs int64 (batch, seq), output logits."""
    import torch

    dummy = {
        "input_ids": torch.full((2, 16), 100, dtype=torch.long) % model.config.vocab_size,
        "attention_mask": torch.ones((2, 16), dtype=torch.long),
        "token_type_ids": torch.zeros((2, 16), dtype=torch.long),
    }
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about python control flow in transformers
        torch.onnx.export(
            model,
            (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def write_model_config(model, out_dir: Path) -> None:
    """config.json for the variant folder: the BERT config with the checkpoint's id2label kept."""
    config = model.config.to_dict()
    config["model_type"] = "bert"
    config["architectures"] = ["BertForSequenceClassification"]
    config["id2label"] = {str(k): v for k, v in model.config.id2label.items()}
    config["label2id"] = {v: int(k) for k, v in model.config.id2label.items()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


class Options(StepOptions):
    opset: Int = Field(17, ge=14, le=21, description="ONNX opset of the exported graph")
    parity_tolerance: float = Field(1e-4, gt=0, description="max abs logit diff allowed between ONNX FP32 and PyTorch")
    parity_batch_sizes: list[Int] = Field([1, 4], min_length=1, description="batch sizes of the parity check")
    parity_lengths: list[Int] = Field([8, 32, 128], min_length=1, description="max token lengths of the parity check")

    @field_validator("parity_batch_sizes")
    @classmethod
    def _batches(cls, values):
        if any(not 1 <= v <= 64 for v in values):
            raise ValueError("every parity batch size must be between 1 and 64")
        return values

    @field_validator("parity_lengths")
    @classmethod
    def _lengths(cls, values):
        if any(not 4 <= v <= MAX_POSITIONS for v in values):
            raise ValueError(f"every parity length must be between 4 and {MAX_POSITIONS} tokens")
        return values


def parent_model(parent: Artifact, ctx: StepContext):
    """The PyTorch model of ``parent``: the already loaded source, or a checkpoint an earlier step made."""
    if Path(parent.path).resolve() == Path(ctx.source.checkpoint_dir).resolve():
        return ctx.source.model
    from structbert_lite.convert.checkpoint import load_classifier

    return load_classifier(parent.path).model


def run(parent: Artifact, options: Options, ctx: StepContext) -> Artifact:
    """Export the parent checkpoint into ``ctx.work_dir`` (model.onnx + config.json + tokenizer files).

    Raises `ParityError` on a mismatch with PyTorch (nothing after the failure is written).
    """
    import onnx

    if parent.format != "checkpoint":
        raise ParityError(f"step export needs a PyTorch checkpoint as parent, got {parent.variant} ({parent.format})")
    out_dir = Path(ctx.work_dir)
    model = parent_model(parent, ctx)
    limit = model.config.max_position_embeddings
    if max(options.parity_lengths) > limit:
        raise ParityError(f"parity_lengths {options.parity_lengths} exceed the model's {limit} positions; lower them")
    copy_companions(ctx.tokenizer_dir, out_dir)
    model_path = out_dir / "model.onnx"
    export_onnx(model, model_path, options.opset)
    onnx.checker.check_model(str(model_path))
    write_model_config(model, out_dir)

    session = create_session(model_path, threads=ctx.threads)
    parity = check_parity(
        reference=lambda feed: torch_logits(model, feed),
        candidate=lambda feed: session.run(["logits"], feed)[0],
        tokenizer_dir=out_dir,
        batch_sizes=options.parity_batch_sizes,
        lengths=options.parity_lengths,
        tolerance=options.parity_tolerance,
        label=ctx.name,
    )
    meta = {
        "engine": "onnxruntime",
        "onnx_opset": options.opset,
        "export": {
            "exporter": "torch.onnx.export(dynamo=False)",
            "parity": {"reference": "pytorch-fp32", "tolerance": options.parity_tolerance, "cases": parity},
        },
    }
    return Artifact(out_dir, ctx.name, meta, format="onnx")
