"""Step ``fuse`` (fp32 → fp32-optimized): onnxruntime's transformer optimizer (model type bert), structure-checked.

The fusions this stage must produce, per encoder layer (what int8 speed depends on later):

    MatMul ─┐                                  ┌──────────────┐
    MatMul ─┼─ Reshape/Transpose/Softmax… ─►   │  Attention   │  ×1 per layer
    MatMul ─┘                                  └──────────────┘
    Add + LayerNormalization               ─►  SkipLayerNormalization  ×2 per layer
    Erf-based Gelu (+ bias Add)            ─►  Gelu / BiasGelu         ×1 per layer
    word+position+type Gather + LayerNorm  ─►  EmbedLayerNormalization ×1

onnxruntime's optimizer returns the input unchanged when a pattern does not match; we count the fused
nodes and raise instead, since a silently unfused graph costs most of the speed.

Fusing is not always faster: onnxruntime fuses much of the FP32 graph itself at load, and on an AVX-512 EPYC
the fully fused graph ran 3–12% slower than the unfused export (issue 13). ``keep: faster`` times each fusion
group against the others in fresh processes and drops the ones that slow this model down (`fusion_select`);
the gate then compares the result with its parent (``min_speedup_vs_parent``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field

from structbert_lite.artifact import Artifact, copy_companions
from structbert_lite.config import Bool, Int
from structbert_lite.errors import GraphStructureError
from structbert_lite.parity import check_parity
from structbert_lite.quantize.onnx_graph import load_onnx, model_dims, op_counts
from structbert_lite.runtime import create_session
from structbert_lite.steps import StepContext, StepOptions

logger = logging.getLogger(__name__)

PARITY_BATCH_SIZES = (1, 4)
PARITY_LENGTHS = (8, 32, 128)


class Options(StepOptions):
    opt_level: Int = Field(1, ge=0, le=2,
                           description="onnxruntime graph optimization level applied by the optimizer (0-2)")
    enable_gelu: Bool = Field(True, description="fuse Gelu")
    enable_layer_norm: Bool = Field(True, description="fuse LayerNormalization")
    enable_attention: Bool = Field(True, description="fuse multi-head attention into Attention")
    enable_skip_layer_norm: Bool = Field(True, description="fuse residual add + LayerNorm into SkipLayerNormalization")
    enable_embed_layer_norm: Bool = Field(True, description="fuse embeddings + LayerNorm into EmbedLayerNormalization")
    enable_bias_skip_layer_norm: Bool = Field(True, description="fold bias adds into SkipLayerNormalization")
    enable_bias_gelu: Bool = Field(True, description="fold bias adds into BiasGelu/FastGelu")
    enable_gelu_approximation: Bool = Field(False, description="replace Gelu by FastGelu (changes numerics)")
    require_fusions: Bool = Field(True, description="fail when Attention/SkipLayerNorm/Gelu fusions are missing")
    parity_tolerance: float = Field(1e-3, gt=0, description="max abs logit diff allowed vs the parent graph")
    keep: Literal["all", "faster"] = Field(
        "all",
        description="all: every enabled fusion; faster: only the groups that make this model faster on this CPU (timed)"
    )
    required_fusions: list[Literal["attention", "skip_layer_norm", "gelu", "embed_layer_norm", "layer_norm"]] = Field(
        ["attention", "embed_layer_norm"],
        description="groups keep: faster never drops (int8-dynamic's QAttention/QEmbedLayerNormalization need them)",
    )
    selection_grid: list[tuple[Int, Int]] = Field(
        [(1, 32), (1, 128), (8, 64)], min_length=1, description="(batch, tokens) points timed by keep: faster"
    )
    selection_rounds: Int = Field(3, ge=1, le=20, description="fresh-process rounds per graph for keep: faster")
    min_gain: float = Field(
        0.03, ge=0, lt=1,
        description="a group is dropped only if the graph is this much faster without it in every round")


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
            "must come from torch.onnx.export(dynamo=False) of a BERT model; set the fuse step's "
            "require_fusions: false only to inspect the graph, never to publish it."
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


def run(parent: Artifact, options: Options, ctx: StepContext) -> Artifact:
    """Fuse the parent FP32 graph into ``ctx.work_dir``; check structure, then parity against the parent graph.

    The parent was itself parity-checked against PyTorch (step export), so the chain stays anchored to it; a
    mismatch is a `ParityError`, a missing fusion a `GraphStructureError`. With ``keep: faster`` the fusion
    groups are timed first (`fusion_select`) and only those that make this model faster here are applied.
    """
    from structbert_lite.quantize import fusion_select

    out_dir = Path(ctx.work_dir)
    num_layers, num_heads, hidden = model_dims(parent.path)
    selection = None
    if options.keep == "faster":
        selection = fusion_select.select_fusions(
            parent.model_path, options,
            lambda path, flags: optimize_bert(parent.model_path, path, num_heads, hidden,
                                              options.model_copy(update=flags)),
            parent.path, ctx.calibration_texts, ctx.threads, ctx.max_length, out_dir / ".fusion-select",
        )
        shutil.rmtree(out_dir / ".fusion-select", ignore_errors=True)
        options = options.model_copy(update=selection["kept_flags"])
    model = optimize_bert(parent.model_path, out_dir / "model.onnx", num_heads, hidden, options)
    counts = op_counts(model)
    fusions = check_fusions(counts, num_layers, options)
    copy_companions(parent.path, out_dir)

    source = create_session(parent.model_path, ctx.threads)
    session = create_session(out_dir / "model.onnx", ctx.threads)
    parity = check_parity(
        lambda feed: source.run(["logits"], feed)[0],
        lambda feed: session.run(["logits"], feed)[0],
        out_dir,
        PARITY_BATCH_SIZES,
        [n for n in PARITY_LENGTHS if n <= ctx.max_length] or [ctx.max_length],
        options.parity_tolerance,
        ctx.name,
        reference_name=f"its parent {parent.variant}",
    )
    meta = {
        "engine": "onnxruntime",
        "fuse": {
            "tool": "onnxruntime.transformers.optimizer",
            "model_type": "bert",
            "fusions": fusions,
            "op_counts": counts,
            "parity": {"reference": parent.variant, "tolerance": options.parity_tolerance, "cases": parity},
            "selection": selection,
        },
    }
    return Artifact(out_dir, ctx.name, meta, format="onnx")
