"""Step ``ort-dynamic-int8`` (fp32-optimized → int8-dynamic): onnxruntime dynamic quantization of the fused graph.

The fused graph quantizes to ``QAttention`` (one per layer) + ``MatMulInteger``/``DynamicQuantizeMatMul`` for
the feed-forward and output projections, and ``QEmbedLayerNormalization`` for the embedding tables (in
StructBERT-base the 21128 × 768 word table is a quarter of the FP32 file: left FP32, int8 is 37% of FP32's
size; quantized, 25%). Quantizing the *fused* graph matters: optimum's stock unfused
``avx2`` preset was 1.7x slower at batch 1 × 32 tokens here (DESIGN.md).

Dynamic int8 takes one activation scale per tensor, so a text's logits depend on its batch neighbours and
their padding: the manifest says so (``batch_invariance``, measured at validation) and the runtime runs this
variant one text at a time.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path
from typing import Literal, Optional, Sequence

from pydantic import Field

from structbert_lite.artifact import Artifact, copy_companions
from structbert_lite.config import Bool
from structbert_lite.errors import GraphStructureError
from structbert_lite.quantize import fallback as fallback_search
from structbert_lite.quantize.cpu_presets import QuantPreset, choose_preset
from structbert_lite.quantize.fallback import FallbackOptions
from structbert_lite.quantize.onnx_graph import load_onnx, model_dims, op_counts
from structbert_lite.steps import StepContext, StepOptions

logger = logging.getLogger(__name__)

QUANTIZED_MATMUL_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")


class Options(StepOptions):
    preset: Literal["auto", "avx2", "avx512", "avx512_vnni"] = Field(
        "avx2", description="CPU preset: weight type and reduce_range for the instruction set ('auto' detects it)"
    )
    per_channel: Bool = Field(True, description="per-output-channel weight scales")
    reduce_range: Optional[Bool] = Field(None, description="7-bit weights (None: the preset decides)")
    weight_type: Optional[Literal["int8", "uint8"]] = Field(
        None, description="weight data type (None: the preset decides)")
    symmetric_weights: Bool = Field(True, description="symmetric weight quantization (zero point 0)")
    op_types: list[str] = Field(
        ["MatMul", "Attention", "EmbedLayerNormalization"],
        min_length=1,
        description="op types to quantize (MatMul, Attention, EmbedLayerNormalization = the embedding tables, Gather)",
    )
    nodes_to_exclude: list[str] = Field([], description="node names kept in FP32")
    fallback: FallbackOptions = Field(default_factory=FallbackOptions, description="accuracy-aware fallback")


def resolve_settings(qcfg, preset: QuantPreset) -> dict:
    """The effective quantize_dynamic settings: explicit config values win over the preset."""
    return {
        "preset": preset.name,
        "isa": preset.isa,
        "required_cpu_flags": list(preset.required_cpu_flags),
        "weight_type": qcfg.weight_type or preset.weight_type,
        "reduce_range": preset.reduce_range if qcfg.reduce_range is None else qcfg.reduce_range,
        "per_channel": qcfg.per_channel,
        "symmetric_weights": qcfg.symmetric_weights,
        "op_types": list(qcfg.op_types),
    }


def quantize_graph(model_path: Path, out_path: Path, settings: dict, nodes_to_exclude: Sequence[str] = ()) -> None:
    """One call of `onnxruntime.quantization.quantize_dynamic` with our settings."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    load_onnx(model_path)  # a clear error for a corrupt input
    quantize_dynamic(
        str(model_path),
        str(out_path),
        op_types_to_quantize=settings["op_types"],
        per_channel=settings["per_channel"],
        reduce_range=settings["reduce_range"],
        weight_type=QuantType.QInt8 if settings["weight_type"] == "int8" else QuantType.QUInt8,
        nodes_to_exclude=list(nodes_to_exclude),
        extra_options={
            # The fused contrib ops (Attention, SkipLayerNormalization) have no shape inference in onnx;
            # without a default tensor type quantize_dynamic fails on them (DESIGN.md).
            "DefaultTensorType": onnx.TensorProto.FLOAT,
            "WeightSymmetric": settings["symmetric_weights"],
            "MatMulConstBOnly": True,
        },
    )


def check_quantized(counts: dict[str, int], num_layers: int, settings: dict, excluded: Sequence[str]) -> dict:
    """Every layer's attention became QAttention (unless excluded) and some MatMuls became integer ops."""
    found = {
        "QAttention": counts.get("QAttention", 0),
        "quantized_matmul": sum(counts.get(op, 0) for op in QUANTIZED_MATMUL_OPS),
        "Attention (fp32)": counts.get("Attention", 0),
        "QEmbedLayerNormalization": counts.get("QEmbedLayerNormalization", 0),
    }
    problems = []
    excluded_attention = sum(1 for n in excluded if n.startswith("Attention"))
    if "Attention" in settings["op_types"] and found["QAttention"] != num_layers - excluded_attention:
        problems.append(f"QAttention: found {found['QAttention']}, expected {num_layers - excluded_attention}")
    if "MatMul" in settings["op_types"] and found["quantized_matmul"] == 0:
        problems.append("no MatMul was quantized (MatMulInteger/DynamicQuantizeMatMul: 0)")
    excluded_embedding = any(n.startswith("EmbedLayerNormalization") for n in excluded)
    embedding_quantized = "EmbedLayerNormalization" in settings["op_types"] and not excluded_embedding
    if embedding_quantized and found["QEmbedLayerNormalization"] != 1:
        problems.append(f"QEmbedLayerNormalization: found {found['QEmbedLayerNormalization']}, expected 1")
    if problems:
        raise GraphStructureError(f"dynamic int8 did not quantize the graph as expected: {'; '.join(problems)}")
    logger.info(
        "✓ int8 structure: %d QAttention, %d quantized MatMul, %d QEmbedLayerNormalization",
        found["QAttention"], found["quantized_matmul"], found["QEmbedLayerNormalization"],
    )
    return found


def run(parent: Artifact, options: Options, ctx: StepContext) -> Artifact:
    """Quantize the parent (fused FP32) folder into ``ctx.work_dir``; apply the accuracy-aware fallback."""
    out_dir = Path(ctx.work_dir)
    preset = choose_preset(options.preset)
    settings = resolve_settings(options, preset)
    num_layers, _, _ = model_dims(parent.path)
    out_path = out_dir / "model.onnx"
    requantize = functools.partial(_requantize, settings=settings)

    quantize_graph(parent.model_path, out_path, settings, options.nodes_to_exclude)
    copy_companions(parent.path, out_dir)  # the fallback scores the folder
    search, excluded = None, list(options.nodes_to_exclude)
    if options.fallback.enabled and ctx.calibration_texts:
        search = fallback_search.search(
            parent.path, out_dir, options.fallback, settings["op_types"], excluded, requantize,
            ctx.calibration_texts, ctx.calibration_labels, ctx.threads, ctx.max_length,
        )
        excluded = search["excluded_nodes"]
    shutil.rmtree(out_dir / ".fallback", ignore_errors=True)
    counts = op_counts(load_onnx(out_path))
    structure = check_quantized(counts, num_layers, settings, excluded)
    meta = {
        "engine": "onnxruntime",
        "quantization": {**settings, "nodes_to_exclude": excluded, "tool": "onnxruntime.quantization.quantize_dynamic"},
        "fallback": search,
        "int8_structure": {"op_counts": counts, **structure},
    }
    return Artifact(out_dir, ctx.name, meta, format="onnx")


def _requantize(model_path: Path, out_path: Path, nodes_to_exclude: Sequence[str], settings: dict) -> None:
    quantize_graph(model_path, out_path, settings, nodes_to_exclude)
