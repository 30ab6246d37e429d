"""fp32 → fp32-optimized: onnxruntime's transformer optimizer (model type bert), structure-checked.

The fusions this stage must produce, per encoder layer (what int8 speed depends on later):

    MatMul ─┐                                  ┌──────────────┐
    MatMul ─┼─ Reshape/Transpose/Softmax… ─►   │  Attention   │  ×1 per layer
    MatMul ─┘                                  └──────────────┘
    Add + LayerNormalization               ─►  SkipLayerNormalization  ×2 per layer
    Erf-based Gelu (+ bias Add)            ─►  Gelu / BiasGelu         ×1 per layer
    word+position+type Gather + LayerNorm  ─►  EmbedLayerNormalization ×1

onnxruntime's optimizer returns the input unchanged when a pattern does not match; we count the fused
nodes and raise instead, since a silently unfused graph costs most of the speed.
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
from pathlib import Path

from structbert_lite.artifact import Artifact
from structbert_lite.errors import GraphStructureError, ModelFileError

logger = logging.getLogger(__name__)

GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")
COPIED_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def load_onnx(path: Path):
    """``onnx.load`` with a clear error for a missing, truncated or corrupt file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, OSError...
        raise ModelFileError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "the file is truncated or corrupt: re-export it (structbert-lite run)"
        ) from None
    return model


def op_counts(model) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def model_dims(folder: Path) -> tuple[int, int, int]:
    """(num_layers, num_heads, hidden_size) from the variant folder's config.json."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return config["num_hidden_layers"], config["num_attention_heads"], config["hidden_size"]


def check_fusions(counts: dict[str, int], num_layers: int, opt) -> dict[str, dict]:
    """Expected vs found fused-node counts; raises `GraphStructureError` when a required fusion is missing."""
    expected = {}
    if opt.enable_attention:
        expected["Attention"] = num_layers
    if opt.enable_skip_layer_norm:
        expected["SkipLayerNormalization"] = 2 * num_layers
    if opt.enable_gelu:
        expected["Gelu|BiasGelu|FastGelu"] = num_layers
    if opt.enable_embed_layer_norm:
        expected["EmbedLayerNormalization"] = 1
    report = {}
    for name, want in expected.items():
        got = sum(counts.get(op, 0) for op in name.split("|"))
        # SkipLayerNormalization: the first residual may stay a LayerNormalization when the embedding
        # LayerNorm is fused into EmbedLayerNormalization; allow one fewer.
        low = want - 1 if name == "SkipLayerNormalization" else want
        report[name] = {"expected": want, "found": got, "ok": low <= got <= want}
    missing = {k: v for k, v in report.items() if not v["ok"]}
    for name, r in report.items():
        logger.info("%s fusion %s: %d (expected %d)", "✓" if r["ok"] else "✗", name, r["found"], r["expected"])
    if missing and opt.require_fusions:
        detail = ", ".join(f"{k}: found {v['found']}, expected {v['expected']}" for k, v in missing.items())
        raise GraphStructureError(
            f"onnxruntime's transformer optimizer did not fuse the graph as expected ({detail}). The export "
            "must come from torch.onnx.export(dynamo=False) of a BERT model; set optimize.require_fusions: false "
            "only to inspect the graph, never to publish it."
        )
    return report


def optimize_bert(model_path: Path, out_path: Path, num_heads: int, hidden_size: int, opt):
    """Run onnxruntime.transformers.optimizer on ``model_path``; write ``out_path``; return the ModelProto."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_gelu = opt.enable_gelu
    options.enable_layer_norm = opt.enable_layer_norm
    options.enable_attention = opt.enable_attention
    options.enable_skip_layer_norm = opt.enable_skip_layer_norm
    options.enable_embed_layer_norm = opt.enable_embed_layer_norm
    options.enable_bias_skip_layer_norm = opt.enable_bias_skip_layer_norm
    options.enable_bias_gelu = opt.enable_bias_gelu
    options.enable_gelu_approximation = opt.enable_gelu_approximation
    load_onnx(model_path)  # clear error for a corrupt input before the optimizer's own
    optimized = optimize_model(
        str(model_path),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=opt.opt_level,
        use_gpu=False,
    )
    optimized.save_model_to_file(str(out_path))
    return optimized.model


def copy_companions(src: Path, dst: Path) -> None:
    for name in COPIED_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)


def run(artifact: Artifact, cfg, out_dir: Path, reference=None) -> Artifact:
    """Fuse ``artifact`` (an fp32 folder) into ``out_dir``; check structure and parity.

    ``reference(feed) -> logits`` is the PyTorch FP32 model; when given, the fused graph must match it within
    ``optimize.parity_tolerance`` (a `ParityError` otherwise). Without it, the input ONNX graph is the reference.
    """
    from structbert_lite.convert.export_onnx import check_parity  # parity check lives with the exporter
    from structbert_lite.runtime import create_session

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_layers, num_heads, hidden = model_dims(artifact.path)
    model = optimize_bert(artifact.model_path, out_dir / "model.onnx", num_heads, hidden, cfg.optimize)
    counts = op_counts(model)
    fusions = check_fusions(counts, num_layers, cfg.optimize)
    copy_companions(artifact.path, out_dir)

    if reference is None:
        source = create_session(artifact.model_path, cfg.validate.threads)
        reference = lambda feed: source.run(["logits"], feed)[0]  # noqa: E731
    session = create_session(out_dir / "model.onnx", cfg.validate.threads)
    parity = check_parity(
        reference,
        lambda feed: session.run(["logits"], feed)[0],
        out_dir,
        cfg.export.parity_batch_sizes,
        cfg.export.parity_lengths,
        cfg.optimize.parity_tolerance,
        "fp32-optimized",
    )
    meta = {
        **{k: v for k, v in artifact.meta.items() if k not in ("parity", "variant")},
        "variant": "fp32-optimized",
        "optimizer": {"tool": "onnxruntime.transformers.optimizer", "model_type": "bert", "options": cfg.optimize.model_dump()},
        "fusions": fusions,
        "op_counts": counts,
        "parity": {"reference": "pytorch-fp32", "tolerance": cfg.optimize.parity_tolerance, "cases": parity},
    }
    return Artifact(out_dir, "fp32-optimized", meta)
